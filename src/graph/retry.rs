//! When a failed Graph call is tried again, and after how long: a pure decision over the
//! error, the retries already made and a jitter the caller draws, so every rule is testable
//! exactly. Also the reading of Graph's `Retry-After`.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderValue, HttpDate};

use super::GraphError;

/// First back-off step; doubled per retry, with jitter, capped by `max_wait`.
const BACKOFF_BASE: Duration = Duration::from_millis(200);

/// The retry rules: 429 and 503 wait Graph's `Retry-After` when it is within `max_wait` (and
/// give up at once when it is not); 502, 503, 504 and connection failures without one back off
/// exponentially; at most `max_retries` retries; anything else is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// How long to wait before the next try, or `None` when `err` is final.
    ///
    /// `jitter` is a uniform draw from [0, 1]: a back-off waits between half and all of its
    /// step, so that many gateways that failed together do not retry together.
    pub fn wait(&self, err: &GraphError, retries_done: u32, jitter: f64) -> Option<Duration> {
        if retries_done >= self.max_retries {
            return None;
        }
        let retry_after = match err {
            GraphError::Throttled { retry_after, .. } => *retry_after,
            GraphError::Unavailable {
                retryable: true,
                retry_after,
                ..
            } => *retry_after,
            _ => return None,
        };
        match retry_after {
            // Graph said how long; waiting longer than we may is no better than answering now.
            Some(wait) => (wait <= self.max_wait).then_some(wait),
            None => Some(self.backoff(retries_done, jitter)),
        }
    }

    fn backoff(&self, retries_done: u32, jitter: f64) -> Duration {
        let step = BACKOFF_BASE
            .saturating_mul(1 << retries_done.min(16))
            .min(self.max_wait);
        // `clamp` keeps a NaN; `mul_f64` would panic on it.
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        step.mul_f64(0.5 + jitter * 0.5)
    }
}

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 10.2.3); a date in the past
/// means now.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

fn parse_retry_after_at(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: SystemTime = text.parse::<HttpDate>().ok()?.into();
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 2,
        max_wait: Duration::from_secs(10),
    };

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    fn throttled(retry_after: Option<u64>) -> GraphError {
        GraphError::Throttled {
            retry_after: retry_after.map(Duration::from_secs),
            request_id: None,
        }
    }

    /// What the client makes of a 5xx (`retryable` for 502-504) or a connection failure (`0`).
    fn unavailable(status: u16, retry_after: Option<u64>) -> GraphError {
        GraphError::Unavailable {
            detail: format!("Graph answered {status}"),
            retryable: status == 0 || (502..=504).contains(&status),
            retry_after: retry_after.map(Duration::from_secs),
            request_id: None,
        }
    }

    fn refused(status: u16) -> GraphError {
        GraphError::Refused {
            status,
            code: "Code".into(),
            message: "message".into(),
            request_id: None,
        }
    }

    #[test]
    fn each_rule_of_the_policy() {
        let cases: [(&str, GraphError, u32, f64, Option<Duration>); 20] = [
            // 429 and 503 wait what Graph asks, if we may wait that long.
            ("429 Retry-After", throttled(Some(3)), 0, 0.0, ms(3_000)),
            (
                "429 Retry-After = max",
                throttled(Some(10)),
                1,
                1.0,
                ms(10_000),
            ),
            ("429 Retry-After > max", throttled(Some(11)), 0, 0.0, None),
            ("429 Retry-After 0", throttled(Some(0)), 0, 0.5, ms(0)),
            (
                "503 Retry-After",
                unavailable(503, Some(2)),
                0,
                0.0,
                ms(2_000),
            ),
            (
                "503 Retry-After > max",
                unavailable(503, Some(60)),
                0,
                1.0,
                None,
            ),
            // Without Retry-After: 200 ms x 2^n, times 0.5 + jitter / 2.
            ("429 no Retry-After", throttled(None), 0, 1.0, ms(200)),
            (
                "502 first, least jitter",
                unavailable(502, None),
                0,
                0.0,
                ms(100),
            ),
            (
                "502 first, most jitter",
                unavailable(502, None),
                0,
                1.0,
                ms(200),
            ),
            (
                "503 second, mid jitter",
                unavailable(503, None),
                1,
                0.5,
                ms(300),
            ),
            ("504 second", unavailable(504, None), 1, 1.0, ms(400)),
            ("connect error", unavailable(0, None), 0, 0.5, ms(150)),
            // At most max_retries.
            ("429 after the last retry", throttled(Some(1)), 2, 0.0, None),
            (
                "502 after the last retry",
                unavailable(502, None),
                2,
                0.0,
                None,
            ),
            // Never retried.
            ("500", unavailable(500, None), 0, 0.0, None),
            ("401", refused(401), 0, 0.0, None),
            ("403", refused(403), 0, 0.0, None),
            ("404", refused(404), 0, 0.0, None),
            ("timeout", GraphError::Timeout, 0, 0.0, None),
            (
                "untrusted redirect",
                GraphError::UntrustedRedirect("elsewhere".into()),
                0,
                0.0,
                None,
            ),
        ];
        for (name, err, retries_done, jitter, expected) in cases {
            assert_eq!(POLICY.wait(&err, retries_done, jitter), expected, "{name}");
        }
        let too_large = GraphError::TooLarge { limit: 1 };
        assert_eq!(POLICY.wait(&too_large, 0, 0.0), None);
    }

    #[test]
    fn the_back_off_is_capped_by_the_longest_wait() {
        let policy = RetryPolicy {
            max_retries: 40,
            max_wait: Duration::from_secs(1),
        };
        let err = unavailable(502, None);
        assert_eq!(policy.wait(&err, 2, 1.0), ms(800));
        assert_eq!(policy.wait(&err, 3, 1.0), ms(1_000));
        assert_eq!(policy.wait(&err, 3, 0.0), ms(500));
        // Far past the doubling's range, still capped and no overflow.
        assert_eq!(policy.wait(&err, 39, 1.0), ms(1_000));
    }

    #[test]
    fn no_retries_means_no_retry() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..POLICY
        };
        assert_eq!(policy.wait(&unavailable(503, None), 0, 0.0), None);
        assert_eq!(policy.wait(&throttled(Some(1)), 0, 0.0), None);
    }

    #[test]
    fn jitter_outside_its_range_is_clamped() {
        let err = unavailable(502, None);
        assert_eq!(POLICY.wait(&err, 0, -3.0), ms(100));
        assert_eq!(POLICY.wait(&err, 0, 7.0), ms(200));
        assert_eq!(POLICY.wait(&err, 0, f64::NAN), ms(200));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = |t: SystemTime| HeaderValue::from_str(&HttpDate::from(t).to_string()).unwrap();
        let cases = [
            (
                HeaderValue::from_static("120"),
                Some(Duration::from_secs(120)),
            ),
            (
                HeaderValue::from_static(" 7 "),
                Some(Duration::from_secs(7)),
            ),
            (HeaderValue::from_static("0"), Some(Duration::ZERO)),
            (
                date(now + Duration::from_secs(90)),
                Some(Duration::from_secs(90)),
            ),
            (date(now), Some(Duration::ZERO)),
            (
                HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
                Some(Duration::ZERO),
            ),
            (HeaderValue::from_static("soon"), None),
            (HeaderValue::from_static("-5"), None),
            (HeaderValue::from_static("1.5"), None),
            (HeaderValue::from_static(""), None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after_at(&value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn retry_after_dates_count_from_the_clock() {
        let later = SystemTime::now() + Duration::from_secs(90);
        let value = HeaderValue::from_str(&HttpDate::from(later).to_string()).unwrap();
        let wait = parse_retry_after(&value).unwrap();
        // HTTP dates have whole seconds, and the clock moves on between the two readings.
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
    }
}
