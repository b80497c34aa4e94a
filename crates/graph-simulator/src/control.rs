//! The HTTP control API under `/_simulator/`, for scripts that cannot hold a
//! [`Simulator`](super::Simulator) handle: benchmarks and CI.
//!
//! | route | answer |
//! |---|---|
//! | `GET /_simulator/stats` | `{"reportCalls":N,"downloadCalls":M,"throttledCalls":T,"inProgress":I,"maxInProgress":P,"windows":{...},"tokenRequests":R,"metadataFetches":F,"jwksFetches":K}` (below): calls in progress are report calls and downloads received and not yet answered; the peak is since the start or the last reset; the last three count Entra ID's token requests and OpenID metadata and JWKS fetches, of every tenant |
//! | `GET /_simulator/calls` | the call log: `[{"kind":"report","pathAndQuery":"...","status":302,"headers":[["name","value"]]}]` |
//! | `POST /_simulator/reset` | `204`: counters, call log and faults cleared |
//! | `POST /_simulator/faults` | `204`: one fault queued (body below); `400` with `{"error":"..."}` if the body is wrong |
//! | `DELETE /_simulator/faults` | `204`: faults cleared |
//! | `POST /_simulator/advance-data` | `204`: a new data version, every ETag changes |
//! | `POST /_simulator/rejected-tokens` | `204`: report calls with the token `{"token":"..."}` get `401 InvalidAuthenticationToken`; `400` if the body is wrong |
//! | `GET /_simulator/limits` | the throttling limits, `{"perApp":14,"perTenant":40,"windowMs":600000}`, or `null` when off |
//! | `POST /_simulator/limits` | `204`: new limits (the same body, every field required), every window empty; `400` if the body is wrong |
//! | `DELETE /_simulator/limits` | `204`: throttling off, every call admitted and none counted |
//! | `GET /_simulator/entities` | the users (sites, groups, teams) of every tenant, the rows of a per-entity report: `{"count":5}` |
//! | `POST /_simulator/entities` | `204`: a new count (the same body, 0 to 1000000), for reports served from now on; `400` if the body is wrong |
//! | `POST /_simulator/caller-tokens` | `{"accessToken":"...","expiresIn":3600}`: a caller token Entra ID would issue for the gateway's API, signed with the current key, for `{"tenant":"GUID","audience":"...","roles":["..."]}` (`audience` defaults to the `--demo` app's, `roles` to `["Reports.Read"]`; an optional `objectId`, the caller's `oid` and `sub`, tells callers of one tenant apart); `400` if the body is wrong |
//! | `POST /_simulator/demo-app` | `{"clientId":"...","clientSecret":"...","audience":"...","tenants":["GUID",...]}`: the `--demo` app registered (a new secret each call, the earlier ones still valid), for a gateway started in app-only mode against this simulator |
//!
//! A fault body is `{"fault":KIND, ...fields, "times":N}` or `{..., "always":true}` (no `times`
//! means once). Kinds and fields: `status` (`status`, optional `retryAfter` seconds),
//! `stalledErrorBody` (`status`, `ms` the body stalls), `delay`
//! (`ms`), `outage` (`status`, before the token is checked), `downloadDelay` (`ms`), `downloadStatus` (`status`),
//! `truncatedDownload`, `unterminatedChunks`, `malformedCsv`,
//! `oversizedCsv` (`bytes`), `manyRows` (`rows`), `foreignRedirect` (`location`), `missingLocation`, `directCsv`.
//! For example `{"fault":"status","status":429,"retryAfter":2,"times":3}`. Any content type is
//! accepted, so `curl -d` works as is.
//!
//! In the stats, `throttledCalls` counts the `429`s answered for the limits (not those of a
//! fault), and `windows` the calls in each throttling window now, keys with none left out:
//! `{"apps":[{"tenant":"...","app":"...","function":"...","calls":N}],"tenants":[{"tenant":"...",
//! "function":"...","calls":N}]}`. An app is the token's `appid` or `azp`, or `token-` and a hash
//! of a token that names neither. `POST /_simulator/reset` zeroes `throttledCalls` but keeps the
//! windows, as Graph would; setting the limits empties them.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{
    Fault, GraphLimits,
    entra::{control_caller_token, register_demo_app},
    limits::WindowCounts,
    state::Shared,
};

pub(super) fn scope() -> actix_web::Scope {
    web::scope("/_simulator")
        .route("/stats", web::get().to(stats))
        .route("/calls", web::get().to(calls))
        .route("/reset", web::post().to(reset))
        .route("/faults", web::post().to(add_fault))
        .route("/faults", web::delete().to(clear_faults))
        .route("/advance-data", web::post().to(advance_data))
        .route("/rejected-tokens", web::post().to(reject_token))
        .route("/limits", web::get().to(limits))
        .route("/limits", web::post().to(set_limits))
        .route("/limits", web::delete().to(clear_limits))
        .route("/entities", web::get().to(entities))
        .route("/entities", web::post().to(set_entities))
        .route("/caller-tokens", web::post().to(caller_token))
        .route("/demo-app", web::post().to(demo_app))
}

/// More rows than this would be a file of gigabytes, held in memory.
const MAX_ENTITIES: usize = 1_000_000;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Entities {
    count: usize,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Stats {
    pub report_calls: usize,
    pub download_calls: usize,
    pub throttled_calls: usize,
    pub windows: WindowCounts,
    pub in_progress: usize,
    pub max_in_progress: usize,
    pub token_requests: usize,
    pub metadata_fetches: usize,
    pub jwks_fetches: usize,
}

/// [`GraphLimits`] as JSON, the window in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitsSpec {
    per_app: u32,
    per_tenant: u32,
    window_ms: u64,
}

impl LimitsSpec {
    fn of(limits: GraphLimits) -> LimitsSpec {
        LimitsSpec {
            per_app: limits.per_app,
            per_tenant: limits.per_tenant,
            window_ms: u64::try_from(limits.window.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn into_limits(self) -> Result<GraphLimits, String> {
        if self.window_ms == 0 {
            return Err("windowMs must be at least 1".into());
        }
        Ok(GraphLimits {
            per_app: self.per_app,
            per_tenant: self.per_tenant,
            window: Duration::from_millis(self.window_ms),
        })
    }
}

/// [`Fault`] as JSON: durations in milliseconds, statuses checked.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "fault",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum FaultSpec {
    Outage {
        status: u16,
    },
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    StalledErrorBody {
        status: u16,
        ms: u64,
    },
    Delay {
        ms: u64,
    },
    DownloadDelay {
        ms: u64,
    },
    DownloadStatus {
        status: u16,
    },
    TruncatedDownload,
    UnterminatedChunks,
    MalformedCsv,
    OversizedCsv {
        bytes: usize,
    },
    ManyRows {
        rows: usize,
    },
    ForeignRedirect {
        location: String,
    },
    MissingLocation,
    DirectCsv,
}

/// A token Graph refuses, as [`Simulator::reject_token`](super::Simulator::reject_token) does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedToken {
    token: String,
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    #[serde(flatten)]
    fault: FaultSpec,
    times: Option<u32>,
    #[serde(default)]
    always: bool,
}

impl FaultRequest {
    /// The fault and how many times it applies (`None`: always).
    fn into_fault(self) -> Result<(Fault, Option<u32>), String> {
        let error_status = |status: u16| {
            (400..=599)
                .contains(&status)
                .then_some(status)
                .ok_or_else(|| format!("status {status} is not an error status (400-599)"))
        };
        let fault = match self.fault {
            FaultSpec::Outage { status } => Fault::Outage(error_status(status)?),
            FaultSpec::Status {
                status,
                retry_after,
            } => Fault::Status {
                status: error_status(status)?,
                retry_after,
            },
            FaultSpec::StalledErrorBody { status, ms } => Fault::StalledErrorBody {
                status: error_status(status)?,
                stall: Duration::from_millis(ms),
            },
            FaultSpec::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
            FaultSpec::DownloadDelay { ms } => Fault::DownloadDelay(Duration::from_millis(ms)),
            FaultSpec::DownloadStatus { status } => Fault::DownloadStatus(error_status(status)?),
            FaultSpec::TruncatedDownload => Fault::TruncatedDownload,
            FaultSpec::UnterminatedChunks => Fault::UnterminatedChunks,
            FaultSpec::MalformedCsv => Fault::MalformedCsv,
            FaultSpec::OversizedCsv { bytes } => Fault::OversizedCsv(bytes),
            FaultSpec::ManyRows { rows } => Fault::ManyRows(rows),
            FaultSpec::ForeignRedirect { location } => Fault::ForeignRedirect(location),
            FaultSpec::MissingLocation => Fault::MissingLocation,
            FaultSpec::DirectCsv => Fault::DirectCsv,
        };
        match (self.times, self.always) {
            (Some(_), true) => Err("give either times or always, not both".into()),
            (Some(0), false) => Err("times must be at least 1".into()),
            (times, false) => Ok((fault, Some(times.unwrap_or(1)))),
            (None, true) => Ok((fault, None)),
        }
    }
}

async fn stats(shared: web::Data<Shared>) -> HttpResponse {
    let state = shared.lock();
    HttpResponse::Ok().json(Stats {
        report_calls: state.report_calls,
        download_calls: state.download_calls,
        throttled_calls: state.books.throttled,
        windows: state.books.counts(Instant::now()),
        in_progress: state.in_progress,
        max_in_progress: state.max_in_progress,
        token_requests: state.entra.token_requests(),
        metadata_fetches: state.entra.metadata_fetches(),
        jwks_fetches: state.entra.jwks_fetches(),
    })
}

async fn calls(shared: web::Data<Shared>) -> HttpResponse {
    let calls = shared.lock().calls();
    HttpResponse::Ok().json(calls)
}

async fn reset(shared: web::Data<Shared>) -> HttpResponse {
    let mut state = shared.lock();
    state.reset_counters();
    state.clear_faults();
    HttpResponse::NoContent().finish()
}

async fn add_fault(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let parsed = serde_json::from_slice::<FaultRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(FaultRequest::into_fault);
    match parsed {
        Ok((fault, times)) => {
            shared.lock().queue_fault(fault, times);
            HttpResponse::NoContent().finish()
        }
        Err(error) => HttpResponse::BadRequest().json(serde_json::json!({ "error": error })),
    }
}

async fn clear_faults(shared: web::Data<Shared>) -> HttpResponse {
    shared.lock().clear_faults();
    HttpResponse::NoContent().finish()
}

async fn advance_data(shared: web::Data<Shared>) -> HttpResponse {
    shared.lock().version += 1;
    HttpResponse::NoContent().finish()
}

async fn reject_token(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    match serde_json::from_slice::<RejectedToken>(&body) {
        Ok(RejectedToken { token }) if !token.trim().is_empty() => {
            shared.lock().reject(&token);
            HttpResponse::NoContent().finish()
        }
        Ok(_) => HttpResponse::BadRequest().json(serde_json::json!({ "error": "empty token" })),
        Err(error) => {
            HttpResponse::BadRequest().json(serde_json::json!({ "error": error.to_string() }))
        }
    }
}

async fn limits(shared: web::Data<Shared>) -> HttpResponse {
    let limits = shared.lock().books.limits();
    HttpResponse::Ok().json(limits.map(LimitsSpec::of))
}

async fn set_limits(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let parsed = serde_json::from_slice::<LimitsSpec>(&body)
        .map_err(|e| e.to_string())
        .and_then(LimitsSpec::into_limits);
    match parsed {
        Ok(limits) => {
            shared.lock().books.set_limits(Some(limits));
            HttpResponse::NoContent().finish()
        }
        Err(error) => HttpResponse::BadRequest().json(serde_json::json!({ "error": error })),
    }
}

async fn clear_limits(shared: web::Data<Shared>) -> HttpResponse {
    shared.lock().books.set_limits(None);
    HttpResponse::NoContent().finish()
}

async fn entities(shared: web::Data<Shared>) -> HttpResponse {
    let count = shared.lock().entities;
    HttpResponse::Ok().json(Entities { count })
}

async fn set_entities(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    match serde_json::from_slice::<Entities>(&body) {
        Ok(Entities { count }) if count <= MAX_ENTITIES => {
            shared.lock().entities = count;
            HttpResponse::NoContent().finish()
        }
        Ok(_) => HttpResponse::BadRequest()
            .json(serde_json::json!({ "error": format!("count must be at most {MAX_ENTITIES}") })),
        Err(error) => {
            HttpResponse::BadRequest().json(serde_json::json!({ "error": error.to_string() }))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerTokenRequest {
    tenant: String,
    audience: Option<String>,
    roles: Option<Vec<String>>,
    #[serde(rename = "objectId")]
    object_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallerTokenAnswer {
    access_token: String,
    expires_in: u64,
}

async fn caller_token(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let minted = serde_json::from_slice::<CallerTokenRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(|request| {
            control_caller_token(
                &shared,
                &request.tenant,
                request.audience.as_deref(),
                request.roles,
                request.object_id,
            )
        });
    match minted {
        Ok((access_token, expires_in)) => HttpResponse::Ok().json(CallerTokenAnswer {
            access_token,
            expires_in,
        }),
        Err(error) => HttpResponse::BadRequest().json(serde_json::json!({ "error": error })),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DemoAppAnswer {
    client_id: String,
    client_secret: String,
    audience: String,
    tenants: Vec<String>,
}

async fn demo_app(shared: web::Data<Shared>) -> HttpResponse {
    let demo = register_demo_app(&shared);
    HttpResponse::Ok().json(DemoAppAnswer {
        client_id: demo.client_id,
        client_secret: demo.client_secret,
        audience: demo.audience,
        tenants: demo.tenants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<(Fault, Option<u32>), String> {
        serde_json::from_str::<FaultRequest>(json)
            .map_err(|e| e.to_string())
            .and_then(FaultRequest::into_fault)
    }

    #[test]
    fn every_fault_kind_has_a_json_form() {
        let cases = [
            r#"{"fault":"status","status":429,"retryAfter":2}"#,
            r#"{"fault":"status","status":503}"#,
            r#"{"fault":"outage","status":503}"#,
            r#"{"fault":"stalledErrorBody","status":401,"ms":10}"#,
            r#"{"fault":"delay","ms":10}"#,
            r#"{"fault":"downloadDelay","ms":10}"#,
            r#"{"fault":"downloadStatus","status":500}"#,
            r#"{"fault":"truncatedDownload"}"#,
            r#"{"fault":"unterminatedChunks"}"#,
            r#"{"fault":"malformedCsv"}"#,
            r#"{"fault":"oversizedCsv","bytes":1000}"#,
            r#"{"fault":"manyRows","rows":1000}"#,
            r#"{"fault":"foreignRedirect","location":"https://evil.example/x"}"#,
            r#"{"fault":"missingLocation"}"#,
            r#"{"fault":"directCsv"}"#,
        ];
        for json in cases {
            assert!(parse(json).is_ok(), "{json}");
        }
        assert!(matches!(
            parse(r#"{"fault":"status","status":429,"retryAfter":2,"times":3}"#),
            Ok((
                Fault::Status {
                    status: 429,
                    retry_after: Some(2)
                },
                Some(3)
            ))
        ));
    }

    #[test]
    fn times_defaults_to_once_and_always_never_runs_out() {
        assert!(matches!(
            parse(r#"{"fault":"directCsv"}"#),
            Ok((_, Some(1)))
        ));
        assert!(matches!(
            parse(r#"{"fault":"directCsv","always":true}"#),
            Ok((_, None))
        ));
    }

    #[test]
    fn refuses_what_cannot_be_meant() {
        for json in [
            r#"{"fault":"teapot"}"#,
            r#"{"status":429}"#,
            r#"{"fault":"status"}"#,
            r#"{"fault":"status","status":200}"#,
            r#"{"fault":"downloadStatus","status":99}"#,
            r#"{"fault":"directCsv","times":0}"#,
            r#"{"fault":"directCsv","times":2,"always":true}"#,
            "not json",
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }

    #[test]
    fn limits_take_all_three_fields_and_a_window_of_at_least_a_millisecond() {
        let parse = |json: &str| {
            serde_json::from_str::<LimitsSpec>(json)
                .map_err(|e| e.to_string())
                .and_then(LimitsSpec::into_limits)
        };
        assert_eq!(
            parse(r#"{"perApp":2,"perTenant":3,"windowMs":1500}"#),
            Ok(GraphLimits {
                per_app: 2,
                per_tenant: 3,
                window: Duration::from_millis(1500)
            })
        );
        for json in [
            r#"{"perApp":2,"perTenant":3}"#,
            r#"{"perApp":2,"perTenant":3,"windowMs":0}"#,
            r#"{"perApp":-1,"perTenant":3,"windowMs":10}"#,
            r#"{"perApp":2,"perTenant":3,"windowMs":10,"window":1}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
        assert_eq!(
            LimitsSpec::of(GraphLimits::default()),
            LimitsSpec {
                per_app: 14,
                per_tenant: 40,
                window_ms: 600_000
            }
        );
    }
}
