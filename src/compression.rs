//! The content codings of a report's answer: the compressed bodies an entry keeps (made once,
//! when the entry is stored), the identity body made from them for a caller that takes neither,
//! and the choice among them by the caller's `Accept-Encoding`.
//!
//! An entry keeps gzip always, since every HTTP client decodes it, and brotli only where it is
//! smaller than gzip; never the identity body, which a caller that accepts neither coding gets
//! by decompressing the gzip body (its length is known, so that allocation is exact).

use std::io::{Read as _, Write as _};

use bytes::Bytes;

/// A representation of a report's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    /// Its `Content-Encoding`, none for identity.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
        }
    }
}

/// A body as an entry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub gzip: Bytes,
    /// Only where brotli is smaller than gzip.
    pub br: Option<Bytes>,
    /// The identity body's length.
    pub len: usize,
}

/// gzip and brotli levels by body size. Compression is made once per miss, so the count
/// reports (most entries, a few KiB each) get the levels past which neither coding gets
/// smaller on JSON, and a fraction of a millisecond. From [`LARGE_BODY`] on (a detail report,
/// up to tens of megabytes) both take a lower level: the sizes stay within a few percent for
/// gzip and a factor of about two for brotli, and a 64 MiB report is compressed in about half a
/// second of CPU rather than several.
fn levels(len: usize) -> (u32, i32) {
    if len < LARGE_BODY { (6, 5) } else { (4, 4) }
}

/// Compresses a body: gzip, and brotli if it comes out smaller. CPU-bound for a large body,
/// which the caller therefore runs off the async workers.
pub fn encode(body: &[u8]) -> Encoded {
    let (gzip_level, br_quality) = levels(body.len());
    let gzip = gzip(body, gzip_level);
    let br = brotli(body, br_quality).filter(|br| br.len() < gzip.len());
    Encoded {
        gzip: kept(gzip),
        br: br.map(kept),
        len: body.len(),
    }
}

fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    // JSON reports compress 5 to 20 times: a tenth of the body is room enough for most.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 10 + 64),
        flate2::Compression::new(level),
    );
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("writing to memory does not fail")
}

fn brotli(body: &[u8], quality: i32) -> Option<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        // brotli's default window: a window sized down to a small body made brotli several
        // times slower at these qualities, and a larger one made large bodies no smaller.
        lgwin: 22,
        size_hint: body.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(body.len() / 10 + 64);
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
    Some(out)
}

/// From this size on a kept buffer is shrunk in place, a remap for an allocation that size,
/// rather than copied.
pub const LARGE_BODY: usize = 1 << 20;

/// A compressor's output, kept in an allocation of its exact size: the output grew by doubling,
/// and the slack behind every cached body would otherwise fragment the heap. A small buffer is
/// copied (a few µs once per miss); a large one is shrunk in place.
pub fn kept(buffer: Vec<u8>) -> Bytes {
    if buffer.len() < LARGE_BODY {
        Bytes::copy_from_slice(&buffer)
    } else {
        Bytes::from(buffer.into_boxed_slice())
    }
}

/// The most deflate expands its input (about 1032 to 1), so a recorded length above this cannot
/// be the gzip body's and is refused before anything is allocated for it.
const MAX_EXPANSION: usize = 1032;

/// Whether `len` can be the identity length of `gzip`: within deflate's expansion, and the
/// gzip trailer's own length field (ISIZE, the length modulo 2^32) agrees.
fn plausible(gzip: &[u8], len: usize) -> bool {
    let trailer_len = gzip
        .len()
        .checked_sub(4)
        .and_then(|at| gzip.get(at..))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    len <= gzip.len().saturating_mul(MAX_EXPANSION) && trailer_len == Some(len as u32)
}

/// The identity body, from the gzip body of `len` bytes; an error if it is not one.
pub fn gunzip(gzip: &[u8], len: usize) -> std::io::Result<Bytes> {
    if !plausible(gzip, len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the recorded length cannot be the gzip body's",
        ));
    }
    match gzip.split_at_checked(GZIP_HEADER) {
        // The header the gateway's own encoder writes (no name, comment or extra field): the
        // deflate stream is inflated in place by this thread's inflater.
        Some((header, rest)) if header[..4] == [0x1f, 0x8b, 8, 0] && rest.len() >= 8 => {
            inflate_member(rest, len)
        }
        _ => gunzip_any(gzip, len),
    }
}

/// gzip's fixed header: magic, method, flags, time, extra flags, system.
const GZIP_HEADER: usize = 10;

thread_local! {
    /// Hits in identity inflate small bodies at a high rate: the inflater's state (some tens of
    /// KiB) is made once per thread rather than once per answer.
    static INFLATER: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// A deflate stream and gzip's trailer (CRC-32 and length) into exactly `len` bytes.
fn inflate_member(member: &[u8], len: usize) -> std::io::Result<Bytes> {
    let (deflate, trailer) = member.split_at(member.len() - 8);
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut body = Vec::with_capacity(len);
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(false);
        // Output stops at the capacity: a longer stream does not end there, and is refused.
        let status = inflater
            .decompress_vec(deflate, &mut body, flate2::FlushDecompress::Finish)
            .map_err(|e| invalid(&e.to_string()))?;
        let whole = status == flate2::Status::StreamEnd
            && usize::try_from(inflater.total_in()).ok() == Some(deflate.len());
        whole
            .then_some(())
            .ok_or_else(|| invalid("not one whole deflate stream"))
    })?;
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("four bytes"));
    let size = u32::from_le_bytes(trailer[4..].try_into().expect("four bytes"));
    let mut hasher = flate2::Crc::new();
    hasher.update(&body);
    if body.len() != len || size != len as u32 || hasher.sum() != crc {
        return Err(invalid("length or CRC differs from the trailer's"));
    }
    Ok(Bytes::from(body))
}

/// Any gzip member, header fields and all.
fn gunzip_any(gzip: &[u8], len: usize) -> std::io::Result<Bytes> {
    let mut body = vec![0; len];
    // `bufread` decodes straight from the slice, with no buffer of its own.
    let mut decoder = flate2::bufread::GzDecoder::new(gzip);
    decoder.read_exact(&mut body)?;
    // Reading past the end checks the trailer (CRC and length) and that nothing is left.
    if decoder.read(&mut [0])? != 0 {
        return Err(std::io::Error::other("longer than its recorded length"));
    }
    Ok(Bytes::from(body))
}

/// How much of a large identity body is inflated per chunk of its answer.
const STREAM_CHUNK: usize = 64 * 1024;

/// A large gzip body inflated as its answer is written, a chunk at a time: an identity answer
/// holds the inflater and one chunk, never the whole body, however many callers ask at once.
/// The trailer (CRC-32 and length) is checked at the end, and a body longer or shorter than `len`
/// ends the stream with an error, which aborts the answer rather than completing a wrong one.
pub struct GunzipStream {
    decoder: flate2::bufread::GzDecoder<bytes::buf::Reader<Bytes>>,
    left: usize,
    done: bool,
}

impl GunzipStream {
    pub fn new(gzip: Bytes, len: usize) -> std::io::Result<GunzipStream> {
        use bytes::Buf as _;
        if !plausible(&gzip, len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the recorded length cannot be the gzip body's",
            ));
        }
        Ok(GunzipStream {
            decoder: flate2::bufread::GzDecoder::new(gzip.reader()),
            left: len,
            done: false,
        })
    }
}

impl futures_util::Stream for GunzipStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        let want = self.left.min(STREAM_CHUNK);
        let mut chunk = vec![0; want.max(1)];
        let result = if want == 0 {
            // All of it written: reading on checks the trailer, and that nothing follows.
            match self.decoder.read(&mut chunk) {
                Ok(0) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Ok(_) => Err(std::io::Error::other("longer than its recorded length")),
                Err(e) => Err(e),
            }
        } else {
            self.decoder.read_exact(&mut chunk).map(|()| chunk)
        };
        match result {
            Ok(chunk) => {
                self.left -= chunk.len();
                Poll::Ready(Some(Ok(Bytes::from(chunk))))
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// Weights of `Accept-Encoding`, in thousandths (RFC 9110 12.4.2: three decimals at most).
#[derive(Debug, Default, Clone, Copy)]
struct Weights {
    br: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

/// The representation to answer with: the coding the caller weighs highest among those kept,
/// brotli before gzip before identity when weighed alike (identity costs a decompression).
/// Without the header, identity: a client that says nothing may not decode anything. A coding
/// the caller does not name is not acceptable, unless `*` names it; identity is acceptable, but
/// last, unless named (`identity;q=0`, or `*;q=0` without it, refuse it). When the caller refuses
/// everything kept, identity is the answer all the same (RFC 9110 12.5.3 allows it): a caller
/// never gets an error for a preference.
pub fn negotiate(accept_encoding: Option<&[u8]>, has_br: bool) -> Coding {
    let Some(header) = accept_encoding else {
        return Coding::Identity;
    };
    let w = parse(header);
    let br = match has_br {
        true => w.br.or(w.any).unwrap_or(0),
        false => 0,
    };
    let gzip = w.gzip.or(w.any).unwrap_or(0);
    // Unnamed, identity ranks below any coding the caller named.
    let identity = w.identity.or(w.any).map_or(1, |q| q.saturating_mul(2));
    let (br, gzip) = (br.saturating_mul(2), gzip.saturating_mul(2));
    if br > 0 && br >= gzip && br >= identity {
        Coding::Br
    } else if gzip > 0 && gzip >= identity {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

fn parse(header: &[u8]) -> Weights {
    let mut w = Weights::default();
    for element in header.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let coding = trim(parts.next().unwrap_or_default());
        let mut q = Some(1000);
        for param in parts {
            let param = trim(param);
            if let Some((name, value)) = split_once(param, b'=')
                && trim(name).eq_ignore_ascii_case(b"q")
            {
                q = qvalue(trim(value));
            }
        }
        // A malformed weight makes the element unreadable: it is left out.
        let Some(q) = q else { continue };
        let slot = if coding.eq_ignore_ascii_case(b"br") {
            &mut w.br
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            &mut w.gzip
        } else if coding.eq_ignore_ascii_case(b"identity") {
            &mut w.identity
        } else if coding == b"*" {
            &mut w.any
        } else {
            continue;
        };
        // Named twice, the higher weight stands.
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    w
}

/// `0`, `0.` and up to three digits, `1`, or `1.` and up to three zeros; in thousandths.
fn qvalue(value: &[u8]) -> Option<u16> {
    let (int, frac) = split_once(value, b'.').unwrap_or((value, b""));
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(stream: GunzipStream) -> std::io::Result<Vec<u8>> {
        use futures_util::{FutureExt as _, StreamExt as _};
        // The stream never waits: its chunks are inflated as they are asked for.
        let chunks: Vec<_> = stream.collect().now_or_never().expect("never pending");
        chunks.into_iter().try_fold(Vec::new(), |mut all, chunk| {
            all.extend_from_slice(&chunk?);
            Ok(all)
        })
    }

    #[test]
    fn a_large_body_streams_back_chunk_by_chunk_and_its_trailer_is_checked() {
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let encoded = encode(&body);
        let stream = GunzipStream::new(encoded.gzip.clone(), body.len()).unwrap();
        assert_eq!(collect(stream).unwrap(), body);
        // A length the trailer does not record is refused before anything is inflated.
        assert!(GunzipStream::new(encoded.gzip.clone(), body.len() - 1).is_err());
        // A body whose CRC is wrong ends its stream with an error.
        let mut corrupt = encoded.gzip.to_vec();
        let at = corrupt.len() - 8;
        corrupt[at] ^= 1;
        let stream = GunzipStream::new(Bytes::from(corrupt), body.len()).unwrap();
        assert!(collect(stream).is_err());
    }

    #[test]
    fn a_recorded_length_beyond_what_deflate_can_expand_allocates_nothing() {
        let encoded = encode(b"{}");
        // The trailer's length field agrees modulo 2^32, but no gzip of this size holds it.
        let huge = 2 + (1usize << 32);
        assert!(gunzip(&encoded.gzip, huge).is_err());
        assert!(GunzipStream::new(encoded.gzip.clone(), huge).is_err());
        assert_eq!(&gunzip(&encoded.gzip, 2).unwrap()[..], b"{}");
    }

    #[test]
    fn accept_encoding_chooses_by_weight_among_what_is_kept() {
        use Coding::{Br, Gzip, Identity};
        // (header, brotli kept?, answer)
        let table: &[(Option<&str>, bool, Coding)] = &[
            (None, true, Identity),
            (Some(""), true, Identity),
            (Some("gzip"), true, Gzip),
            (Some("br"), true, Br),
            (Some("br"), false, Identity),
            (Some("gzip, deflate, br"), true, Br),
            (Some("gzip, deflate, br"), false, Gzip),
            (Some("br;q=1.0, gzip;q=0.8"), true, Br),
            (Some("br;q=0.5, gzip;q=0.8"), true, Gzip),
            (Some("BR;Q=0.9, GZip;q=0.1"), true, Br),
            (Some("x-gzip"), true, Gzip),
            (Some(" gzip ; q=0.2 , identity;q=0.5"), true, Identity),
            (Some("gzip;q=0.5, identity"), true, Identity),
            (Some("gzip;q=0"), true, Identity),
            (Some("br;q=0, gzip"), true, Gzip),
            (Some("*"), true, Br),
            (Some("*"), false, Gzip),
            (Some("*;q=0.5, br;q=0"), true, Gzip),
            (Some("*;q=0"), true, Identity),
            (Some("identity;q=0"), true, Identity),
            (Some("br, identity;q=0"), false, Identity),
            (Some("deflate, compress"), true, Identity),
            (Some("gzip;q=2"), true, Identity),
            (Some("gzip;q=0.1234"), true, Identity),
            (Some("gzip;q=abc, br"), true, Br),
            (Some("gzip;q=1.000"), true, Gzip),
            (Some("gzip;q=0.001"), true, Gzip),
            (Some("gzip;q=1.001"), true, Identity),
            (Some("gzip;q=0, gzip;q=0.3"), true, Gzip),
            (Some("gzip;level=1"), true, Gzip),
        ];
        for (header, has_br, expected) in table {
            assert_eq!(
                negotiate(header.map(str::as_bytes), *has_br),
                *expected,
                "{header:?}, brotli kept: {has_br}"
            );
        }
    }

    fn json(rows: usize) -> Vec<u8> {
        let mut out = String::from("{\"value\":[");
        for i in 0..rows {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"reportDate\":\"2026-11-{:02}\",\"peerToPeer\":{},\"organized\":null}}",
                i % 28 + 1,
                i * 13 % 997
            ));
        }
        out.push_str("]}");
        out.into_bytes()
    }

    #[test]
    fn each_kept_coding_decodes_to_the_body() {
        for body in [json(7), json(180), json(20_000)] {
            let encoded = encode(&body);
            assert_eq!(encoded.len, body.len());
            assert!(encoded.gzip.len() < body.len());
            assert_eq!(gunzip(&encoded.gzip, body.len()).unwrap(), body);
            let br = encoded.br.expect("brotli is smaller on JSON");
            assert!(br.len() < encoded.gzip.len());
            let mut decoded = Vec::new();
            brotli::BrotliDecompress(&mut &br[..], &mut decoded).unwrap();
            assert_eq!(decoded, body);
        }
    }

    #[test]
    fn brotli_is_kept_only_where_smaller_than_gzip() {
        // Bytes that do not compress: brotli's framing is then no smaller than gzip's.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let gzip = gzip(&noise, 9).len();
        let br = brotli(&noise, 9).unwrap().len();
        let encoded = encode(&noise);
        assert_eq!(encoded.br.is_some(), br < gzip, "gzip {gzip}, br {br}");
        assert_eq!(gunzip(&encoded.gzip, noise.len()).unwrap(), noise);
        // An empty body: brotli's one byte beats gzip's header, and both decode.
        let empty = encode(b"");
        assert_eq!(gunzip(&empty.gzip, 0).unwrap(), Bytes::new());
    }

    #[test]
    fn a_gzip_body_of_another_length_is_refused() {
        let body = json(7);
        let encoded = encode(&body);
        assert!(gunzip(&encoded.gzip, body.len() - 1).is_err());
        assert!(gunzip(&encoded.gzip, body.len() + 1).is_err());
        assert!(gunzip(&body, body.len()).is_err());
        let mut corrupt = encoded.gzip.to_vec();
        let crc = corrupt.len() - 8;
        corrupt[crc] ^= 1;
        assert!(gunzip(&corrupt, body.len()).is_err(), "CRC");
        assert!(
            gunzip(&encoded.gzip[..20], body.len()).is_err(),
            "cut short"
        );
    }

    #[test]
    fn a_gzip_member_with_header_fields_decodes_too() {
        let body = json(30);
        let mut encoder = flate2::GzBuilder::new()
            .filename("report.json")
            .write(Vec::new(), flate2::Compression::default());
        encoder.write_all(&body).unwrap();
        let gzip = encoder.finish().unwrap();
        assert_eq!(gunzip(&gzip, body.len()).unwrap(), body);
    }
}
