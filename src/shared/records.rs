//! What the shared cache keeps, as bytes: the plaintext that is sealed before it reaches Redis.
//! A versioned, length-prefixed layout; anything that does not decode is ignored like an entry
//! that does not open. Each kind of record has its own version: a report record is at version 2
//! since it keeps the compressed bodies; a version 1 report (the identity body, as replicas
//! before compression wrote it) still reads, so that replicas of this version serve what older
//! ones stored. Older replicas ignore version 2 records: during a rolling update they fetch
//! once per key what the new ones wrote.

use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;

use crate::{
    cache::{Refusal, TokenEntry},
    compression::Encoded,
};

const VERSION: u8 = 1;
/// Reports with their compressed bodies.
const REPORT_VERSION: u8 = 2;
/// Reports with the identity body.
const IDENTITY_REPORT_VERSION: u8 = 1;

/// A report entry as the shared cache keeps it; its time is wall-clock, which every replica
/// reads alike, where an `Instant` means nothing outside its process.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    pub graph_etag: Option<String>,
    pub etag: HeaderValue,
    pub body: StoredBody,
    /// When the Graph call that last confirmed the report was sent, milliseconds since the epoch.
    pub validated_ms: u64,
}

/// A report's answer as a record holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredBody {
    /// Compressed, as every entry is now.
    Encoded(Encoded),
    /// The identity body of a record written before compression: to be compressed on reading.
    Identity(Bytes),
}

/// A token's validation, and until when (ms since the epoch) it stands: Redis' TTL alone is
/// not trusted, since anyone with access to Redis can lift it.
pub fn encode_token(entry: &TokenEntry, valid_until: u64) -> Vec<u8> {
    let mut w = Writer::new(VERSION);
    w.bytes(entry.tenant.as_bytes());
    w.bytes(entry.app.as_bytes());
    w.optional_u64(entry.expires_at);
    w.u64(valid_until);
    w.0
}

pub fn decode_token(bytes: &[u8]) -> Option<(TokenEntry, u64)> {
    let mut r = Reader::new(bytes, VERSION)?;
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
    let mut w = Writer::new(VERSION);
    w.u64(u64::from(refusal.status));
    w.bytes(refusal.code.as_bytes());
    w.bytes(refusal.message.as_bytes());
    w.u64(valid_until);
    w.0
}

pub fn decode_refusal(bytes: &[u8]) -> Option<(Refusal, u64)> {
    let mut r = Reader::new(bytes, VERSION)?;
    let refusal = Refusal {
        status: u16::try_from(r.u64()?).ok()?,
        code: r.string()?.to_owned(),
        message: r.string()?.to_owned(),
    };
    let valid_until = r.u64()?;
    r.end().then_some((refusal, valid_until))
}

/// A report, at [`REPORT_VERSION`]. One that still holds an identity body (read from an older
/// record) is written as it was read.
pub fn encode_report(report: &StoredReport) -> Vec<u8> {
    let version = match report.body {
        StoredBody::Encoded(_) => REPORT_VERSION,
        StoredBody::Identity(_) => IDENTITY_REPORT_VERSION,
    };
    let mut w = Writer::new(version);
    w.u64(report.validated_ms);
    match &report.graph_etag {
        Some(etag) => {
            w.0.push(1);
            w.bytes(etag.as_bytes());
        }
        None => w.0.push(0),
    }
    w.bytes(report.etag.as_bytes());
    match &report.body {
        StoredBody::Identity(body) => w.bytes(body),
        StoredBody::Encoded(body) => {
            w.u64(body.len as u64);
            w.bytes(&body.gzip);
            match &body.br {
                Some(br) => {
                    w.0.push(1);
                    w.bytes(br);
                }
                None => w.0.push(0),
            }
        }
    }
    w.0
}

pub fn decode_report(bytes: &[u8]) -> Option<StoredReport> {
    let (&version, _) = bytes.split_first()?;
    let mut r = Reader::new(bytes, version)?;
    let validated_ms = r.u64()?;
    let graph_etag = match r.byte()? {
        0 => None,
        1 => Some(r.string()?.to_owned()),
        _ => return None,
    };
    let etag = HeaderValue::from_bytes(r.bytes()?).ok()?;
    let body = match version {
        IDENTITY_REPORT_VERSION => StoredBody::Identity(Bytes::copy_from_slice(r.bytes()?)),
        REPORT_VERSION => {
            let len = usize::try_from(r.u64()?).ok()?;
            let gzip = Bytes::copy_from_slice(r.bytes()?);
            let br = match r.byte()? {
                0 => None,
                1 => Some(Bytes::copy_from_slice(r.bytes()?)),
                _ => return None,
            };
            StoredBody::Encoded(Encoded { gzip, br, len })
        }
        _ => return None,
    };
    r.end().then_some(StoredReport {
        graph_etag,
        etag,
        body,
        validated_ms,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(version: u8) -> Writer {
        Writer(vec![version])
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
    fn new(bytes: &'a [u8], expected: u8) -> Option<Reader<'a>> {
        let (&version, rest) = bytes.split_first()?;
        (version == expected).then_some(Reader(rest))
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
        let identity = Bytes::from_static(b"{\"value\":[]}");
        let encoded = crate::compression::encode(&identity);
        let without_br = Encoded {
            br: None,
            ..encoded.clone()
        };
        for graph_etag in [None, Some("\"g1\"".to_owned())] {
            for body in [
                StoredBody::Encoded(encoded.clone()),
                StoredBody::Encoded(without_br.clone()),
                StoredBody::Identity(identity.clone()),
            ] {
                let report = StoredReport {
                    graph_etag: graph_etag.clone(),
                    etag: HeaderValue::from_static("\"abc\""),
                    body,
                    validated_ms: 1_800_000_000_000,
                };
                assert_eq!(decode_report(&encode_report(&report)), Some(report));
            }
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
        let report = encode_report(&StoredReport {
            graph_etag: None,
            etag: HeaderValue::from_static("\"abc\""),
            body: StoredBody::Encoded(crate::compression::encode(b"{}")),
            validated_ms: 1,
        });
        let mut future = report.clone();
        future[0] = REPORT_VERSION + 1;
        assert!(decode_report(&future).is_none());
        assert!(decode_report(&report[..report.len() - 1]).is_none());
    }

    /// The layout replicas wrote before compression, byte for byte: it must still read.
    #[test]
    fn a_report_written_before_compression_reads_as_its_identity_body() {
        let mut old = vec![1];
        old.extend_from_slice(&7u64.to_be_bytes());
        old.push(1);
        old.extend_from_slice(&4u32.to_be_bytes());
        old.extend_from_slice(b"\"g\"x");
        old.extend_from_slice(&5u32.to_be_bytes());
        old.extend_from_slice(b"\"abc\"");
        old.extend_from_slice(&2u32.to_be_bytes());
        old.extend_from_slice(b"{}");
        let report = decode_report(&old).unwrap();
        assert_eq!(report.validated_ms, 7);
        assert_eq!(report.graph_etag.as_deref(), Some("\"g\"x"));
        assert_eq!(report.etag, HeaderValue::from_static("\"abc\""));
        assert_eq!(report.body, StoredBody::Identity(Bytes::from_static(b"{}")));
    }
}
