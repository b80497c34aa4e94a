//! What the shared cache keeps, as bytes: the plaintext that is sealed before it reaches Redis.
//! A versioned, length-prefixed layout; anything that does not decode is ignored like an entry
//! that does not open.

use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;

use crate::cache::{Refusal, TokenEntry};

const VERSION: u8 = 1;

/// A report entry as the shared cache keeps it; its time is wall-clock, which every replica
/// reads alike, where an `Instant` means nothing outside its process.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    pub graph_etag: Option<String>,
    pub etag: HeaderValue,
    pub body: Bytes,
    /// When the Graph call that last confirmed the report was sent, milliseconds since the epoch.
    pub validated_ms: u64,
}

/// A token's validation, and until when (ms since the epoch) it stands: Redis' TTL alone is
/// not trusted, since anyone with access to Redis can lift it.
pub fn encode_token(entry: &TokenEntry, valid_until: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(entry.tenant.as_bytes());
    w.bytes(entry.app.as_bytes());
    w.optional_u64(entry.expires_at);
    w.u64(valid_until);
    w.0
}

pub fn decode_token(bytes: &[u8]) -> Option<(TokenEntry, u64)> {
    let mut r = Reader::new(bytes)?;
    let entry = TokenEntry {
        tenant: Arc::from(r.string()?),
        app: Arc::from(r.string()?),
        expires_at: r.optional_u64()?,
    };
    let valid_until = r.u64()?;
    r.end().then_some((entry, valid_until))
}

/// Graph's refusal of a token, and until when (ms since the epoch) it is repeated.
pub fn encode_refusal(refusal: &Refusal, valid_until: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(u64::from(refusal.status));
    w.bytes(refusal.code.as_bytes());
    w.bytes(refusal.message.as_bytes());
    w.u64(valid_until);
    w.0
}

pub fn decode_refusal(bytes: &[u8]) -> Option<(Refusal, u64)> {
    let mut r = Reader::new(bytes)?;
    let refusal = Refusal {
        status: u16::try_from(r.u64()?).ok()?,
        code: r.string()?.to_owned(),
        message: r.string()?.to_owned(),
    };
    let valid_until = r.u64()?;
    r.end().then_some((refusal, valid_until))
}

pub fn encode_report(report: &StoredReport) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(report.validated_ms);
    match &report.graph_etag {
        Some(etag) => {
            w.0.push(1);
            w.bytes(etag.as_bytes());
        }
        None => w.0.push(0),
    }
    w.bytes(report.etag.as_bytes());
    w.bytes(&report.body);
    w.0
}

pub fn decode_report(bytes: &[u8]) -> Option<StoredReport> {
    let mut r = Reader::new(bytes)?;
    let validated_ms = r.u64()?;
    let graph_etag = match r.byte()? {
        0 => None,
        1 => Some(r.string()?.to_owned()),
        _ => return None,
    };
    let etag = HeaderValue::from_bytes(r.bytes()?).ok()?;
    let body = Bytes::copy_from_slice(r.bytes()?);
    r.end().then_some(StoredReport {
        graph_etag,
        etag,
        body,
        validated_ms,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Writer {
        Writer(vec![VERSION])
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn optional_u64(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.0.push(1);
                self.u64(value);
            }
            None => self.0.push(0),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("records are far below 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Option<Reader<'a>> {
        let (&version, rest) = bytes.split_first()?;
        (version == VERSION).then_some(Reader(rest))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn optional_u64(&mut self) -> Option<Option<u64>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(self.u64()?)),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn end(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let token = TokenEntry {
            tenant: "contoso".into(),
            app: "app".into(),
            expires_at: Some(1_900_000_000),
        };
        let (back, until) = decode_token(&encode_token(&token, 42)).unwrap();
        assert_eq!(until, 42);
        assert_eq!(
            (back.tenant, back.app, back.expires_at),
            (token.tenant, token.app, token.expires_at)
        );
        let refusal = Refusal {
            status: 401,
            code: "InvalidAuthenticationToken".into(),
            message: "expired".into(),
        };
        assert_eq!(
            decode_refusal(&encode_refusal(&refusal, 7)),
            Some((refusal, 7))
        );
        for graph_etag in [None, Some("\"g1\"".to_owned())] {
            let report = StoredReport {
                graph_etag,
                etag: HeaderValue::from_static("\"abc\""),
                body: Bytes::from_static(b"{\"value\":[]}"),
                validated_ms: 1_800_000_000_000,
            };
            assert_eq!(decode_report(&encode_report(&report)), Some(report));
        }
    }

    #[test]
    fn anything_else_is_not_a_record() {
        let token = encode_token(
            &TokenEntry {
                tenant: "t".into(),
                app: "a".into(),
                expires_at: None,
            },
            1,
        );
        assert!(
            decode_token(&token[..token.len() - 1]).is_none(),
            "cut short"
        );
        let mut longer = token.clone();
        longer.push(0);
        assert!(decode_token(&longer).is_none(), "trailing bytes");
        let mut other_version = token;
        other_version[0] = VERSION + 1;
        assert!(decode_token(&other_version).is_none());
        assert!(decode_report(b"").is_none());
    }
}
