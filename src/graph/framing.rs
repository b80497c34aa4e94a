//! Where each HTTP/1.1 response on a plain connection ends, so that a connection closed in
//! the middle of one is a read error rather than a shorter body.
//!
//! awc ends a response body at end-of-file as if the body were complete: a chunked body whose
//! last chunk never came reads as a clean, shorter body. Over TLS, rustls already refuses an
//! end-of-file without `close_notify`; on a plain connection nothing does, so the connector
//! below wraps plain TCP streams in [`Guarded`], which follows the framing of the responses
//! it reads and turns an end-of-file inside one into `UnexpectedEof`.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A response head or a chunk line longer than this is left to awc to refuse: the framing is
/// then no longer followed.
const MAX_LINE_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// How far into the current response a connection has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between responses, or inside a response head (`line` holds it).
    Head,
    /// This many body bytes still to come.
    Length(u64),
    /// Inside a chunk-size line (`line` holds it).
    ChunkSize,
    /// This many bytes of the current chunk still to come.
    ChunkData(u64),
    /// The line break after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, until an empty one (`line` holds the current one).
    Trailers,
    /// A body without length or chunks: it ends with the connection.
    UntilClose,
    /// A framing this tracker does not follow; awc decides.
    Unknown,
}

/// Follows response framing over the bytes a connection reads.
#[derive(Debug)]
pub(super) struct Framing {
    state: State,
    line: Vec<u8>,
}

impl Framing {
    pub(super) fn new() -> Framing {
        Framing {
            state: State::Head,
            line: Vec::new(),
        }
    }

    /// Whether an end-of-file now ends the connection between responses (or a body that ends
    /// with it), rather than cutting a response short.
    pub(super) fn complete_at_eof(&self) -> bool {
        match self.state {
            State::Head => self.line.iter().all(u8::is_ascii_whitespace),
            State::UntilClose | State::Unknown => true,
            _ => false,
        }
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match self.state {
                State::UntilClose | State::Unknown => return,
                State::Length(left) | State::ChunkData(left) => {
                    let take = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Head,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    &data[take..]
                }
                State::ChunkEnd => match data.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.state = State::ChunkSize;
                        &data[at + 1..]
                    }
                    None => return,
                },
                State::Head => self.feed_head(data),
                State::ChunkSize | State::Trailers => self.feed_line(data),
            };
        }
    }

    /// Adds to the response head; at its end, decides how the body is framed.
    fn feed_head<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let before = self.line.len();
        self.line.extend_from_slice(data);
        let Some(end) = head_end(&self.line) else {
            if self.line.len() > MAX_LINE_BYTES {
                self.state = State::Unknown;
            }
            return &[];
        };
        self.state = body_framing(&self.line[..end]);
        self.line.clear();
        &data[end - before..]
    }

    /// Adds to a chunk-size or trailer line; at its end, moves on.
    fn feed_line<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let Some(at) = data.iter().position(|&b| b == b'\n') else {
            self.line.extend_from_slice(data);
            if self.line.len() > MAX_LINE_BYTES {
                self.state = State::Unknown;
            }
            return &[];
        };
        self.line.extend_from_slice(&data[..at]);
        let line = self.line.trim_ascii();
        self.state = match self.state {
            State::ChunkSize => match chunk_size(line) {
                Some(0) => State::Trailers,
                Some(size) => State::ChunkData(size),
                None => State::Unknown,
            },
            _ if line.is_empty() => State::Head,
            _ => State::Trailers,
        };
        self.line.clear();
        &data[at + 1..]
    }
}

/// Index just past the blank line that ends a head, if it has come. Leading line breaks are
/// tolerated before a head, as awc does.
fn head_end(head: &[u8]) -> Option<usize> {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let body = &head[start..];
    let crlf = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = body.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(start + end)
}

/// How the body after this head is framed (RFC 9112 section 6.3, for a response to a GET).
fn body_framing(head: &[u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = response.parse(head) else {
        return State::Unknown;
    };
    match response.code {
        // A switch of protocol leaves HTTP; other interim answers precede the real one.
        Some(101) | None => return State::Unknown,
        Some(100..=199 | 204 | 304) => return State::Head,
        _ => {}
    }
    let headers = &*response.headers;
    let header = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if let Some(coding) = header("transfer-encoding").next_back() {
        let last = coding.rsplit(|&b| b == b',').next().unwrap_or_default();
        return if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            State::ChunkSize
        } else {
            State::UntilClose
        };
    }
    match header("content-length").next() {
        None => State::UntilClose,
        Some(value) => match std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .map(str::parse)
        {
            Some(Ok(0)) => State::Head,
            Some(Ok(length)) => State::Length(length),
            _ => State::Unknown,
        },
    }
}

/// The size of a chunk-size line, extensions ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?.trim_ascii();
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// A connection whose reads follow the framing of the responses on it, when it is plain text.
pub(super) struct Guarded<Io> {
    io: Io,
    /// `None` under TLS: the bytes are ciphertext, and rustls guards the end itself.
    framing: Option<Framing>,
}

impl<Io> fmt::Debug for Guarded<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let Some(framing) = &mut this.framing else {
            return Poll::Ready(Ok(()));
        };
        let read = &buf.filled()[before..];
        if read.is_empty() && room && !framing.complete_at_eof() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed in the middle of a response",
            )));
        }
        framing.feed(read);
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<Io: ActixStream> ActixStream for Guarded<Io> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.io.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.io.poll_write_ready(cx)
    }
}

/// awc's TCP connector with every plain `http` connection [`Guarded`].
#[derive(Clone)]
pub(super) struct GuardedConnector<S>(pub S);

/// The TCP connector awc uses by default.
pub(super) fn tcp_connector() -> GuardedConnector<ConnectorService> {
    GuardedConnector(ConnectorService::default())
}

impl<S> Service<ConnectInfo<Uri>> for GuardedConnector<S>
where
    S: Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError>,
    S::Future: 'static,
{
    type Response = Connection<Uri, Guarded<TcpStream>>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, ConnectError>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let plain = req.request().scheme_str() == Some("http");
        let connecting = self.0.call(req);
        Box::pin(async move {
            let connection = connecting.await?;
            let (io, connection) = connection.replace_io(());
            let guarded = Guarded {
                io,
                framing: plain.then(Framing::new),
            };
            Ok(connection.replace_io(guarded).1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes and says whether an end-of-file would then be
    /// clean.
    fn clean_end(wire: &[u8], step: usize) -> bool {
        let mut framing = Framing::new();
        for piece in wire.chunks(step) {
            framing.feed(piece);
        }
        framing.complete_at_eof()
    }

    #[test]
    fn an_end_of_file_is_clean_only_between_responses_or_after_a_close_delimited_body() {
        let cases: [(&str, &[u8], bool); 16] = [
            ("nothing read", b"", true),
            ("half a head", b"HTTP/1.1 200 OK\r\ncontent-le", false),
            (
                "full length",
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
                true,
            ),
            (
                "short length",
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc",
                false,
            ),
            (
                "length zero",
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            (
                "all chunks",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                true,
            ),
            (
                "no last chunk",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
                false,
            ),
            (
                "a chunk cut short",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc",
                false,
            ),
            (
                "last chunk without its blank line",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
                false,
            ),
            (
                "trailers and extensions",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                  a;ext=1\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n",
                true,
            ),
            (
                "until close",
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc",
                true,
            ),
            (
                "304 has no body",
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
                true,
            ),
            (
                "100 then a body",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\na",
                false,
            ),
            (
                "two responses",
                b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n\
                  HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab",
                true,
            ),
            (
                "second response cut",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab\
                  HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n",
                false,
            ),
            ("not HTTP", b"\x16\x03\x01\x02\x00\r\n\r\n\x01", true),
        ];
        for (name, wire, clean) in cases {
            for step in [1, 2, 7, wire.len().max(1)] {
                assert_eq!(clean_end(wire, step), clean, "{name}, {step}-byte reads");
            }
        }
    }

    #[test]
    fn a_huge_head_stops_being_followed() {
        let mut framing = Framing::new();
        framing.feed(b"HTTP/1.1 200 OK\r\nx: ");
        framing.feed(&vec![b'a'; MAX_LINE_BYTES + 1]);
        assert_eq!(framing.state, State::Unknown);
        assert!(framing.complete_at_eof());
    }
}
