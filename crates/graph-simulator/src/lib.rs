//! The Graph simulator: a real actix-web server on loopback that speaks Microsoft Graph's wire
//! protocol for every usage report of the report catalog (`report_catalog::all()`), for the
//! black-box tests, `--demo` and the benchmarks.
//!
//! It owns what Graph would: the `302` to a short-lived pre-authenticated download on its own
//! origin, strong ETags and `304`, Graph-shaped errors, the BOM + CRLF CSV with the catalog's
//! columns in a per-tenant order and empty cells, and data that is deterministic per tenant,
//! report function, period or date, data version and refresh date: one row a day for the count
//! reports, one per user, site, group or team for the detail ones (as many as
//! [`SimulatorConfig::entities`] says). On top of that it offers what Graph does not: faults to
//! switch on, forged tokens to reject, a data version to advance, and a record of every call
//! with the headers it carried, through [`Simulator`] and an HTTP control API under
//! `/_simulator/` for scripts.
//!
//! It also plays Entra ID on the same origin ([`Simulator::authority_url`]), for a gateway in
//! app-only mode: each tenant's OpenID metadata and JWKS (fixture RSA keys, rotated with
//! [`Simulator::rotate_signing_key`]), and the token endpoint's client credentials grant by a
//! registered secret, a client assertion signed with a registered certificate (PS256 or RS256,
//! verified for real), or a federated token of its own issuer ([`Simulator::federated_assertion`]).
//! The app tokens it issues are RS256 JWTs for Graph. Tests mint callers' tokens for the
//! gateway's API with [`Simulator::mint_caller_token`], well signed or not ([`Signing`]), and
//! can fail the token endpoint and the JWKS, and count their calls.
//!
//! The tenant of a call is the `tid` claim of a JWT or, for an opaque token, a hash of it; like
//! the gateway in pass-through mode, Graph's side does not verify tokens beyond `exp`,
//! [`Simulator::reject_token`] and [`Simulator::reject_app`].
//!
//! Like Graph, it throttles report calls by default ([`GraphLimits`]): per (tenant, app, report
//! function) and per (tenant, report function), the app being the token's `appid` or `azp` claim,
//! or the token itself when it has neither. A call refused for its token counts toward nothing.

mod control;
mod csv;
mod date;
mod entra;
mod handlers;
mod limits;
mod period;
mod state;
#[cfg(test)]
mod tests;
mod token;

use std::{io, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use base64::Engine as _;
use serde::Serialize;

use csv::{CsvShape, MISSION, ReportData, spec_of};
pub use date::{Day, InvalidDate};
pub use entra::{
    CallerToken, CredentialKind, DemoApp, FEDERATED_AUDIENCE, Signing, TokenRequest, TokenVersion,
};
pub use limits::GraphLimits;
pub use period::{Period, Window};
use report_catalog::Parameter;
use state::Shared;

/// How the simulated Graph behaves when no fault is queued.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Added to every report call.
    pub report_latency: Duration,
    /// Added to every download.
    pub download_latency: Duration,
    /// How long a `Location` from a `302` can be downloaded.
    pub download_ttl: Duration,
    /// The report's refresh date, `YYYY-MM-DD`; `None` follows the clock: today (UTC) minus 2 days.
    pub refresh_date: Option<String>,
    /// Server worker threads.
    pub workers: usize,
    /// Graph's throttling of report calls; `None` admits every call.
    pub limits: Option<GraphLimits>,
    /// The users (or sites, groups, teams) of every tenant: the rows of a per-entity report.
    pub entities: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            report_latency: Duration::ZERO,
            download_latency: Duration::ZERO,
            download_ttl: Duration::from_secs(5 * 60),
            refresh_date: None,
            workers: 1,
            limits: Some(GraphLimits::default()),
            entities: 5,
        }
    }
}

/// A running simulator. Clones share the same server and state.
///
/// The server runs until [`Simulator::stop`] or until the runtime it was started on shuts down.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    handle: ServerHandle,
    port: u16,
}

/// Which endpoint a call reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CallKind {
    /// `GET /v1.0/reports/{function}(...)`
    Report,
    /// `GET /data/download/{id}?sig=...`
    Download,
}

/// A call as the simulator received it, recorded before it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenCall {
    pub kind: CallKind,
    pub path_and_query: String,
    /// The status it was (or is being) answered with.
    pub status: u16,
    /// Header names lowercase, sorted by name (actix does not keep the wire order).
    pub headers: Vec<(String, String)>,
    /// The catalog's name of the report function called (or downloaded), once the URL was
    /// read: `None` for a call refused before, or a download of no live link.
    pub function: Option<String>,
    /// The period or date it was called for, alongside `function`.
    pub window: Option<Window>,
}

impl SeenCall {
    /// The first value of a header, by name in any letter case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A misbehaviour to switch on. Faults apply only to calls Graph would otherwise answer
/// normally: a call refused for its token or URL, or a download of a dead link, consumes none.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Graph's front door fails before it looks at the token (a regional outage): every report
    /// call answers this status, whatever its token. The one fault a refused token meets.
    Outage(u16),
    /// A report call answers this status with a Graph-shaped error, and `Retry-After` when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// A report call answers this status (a Graph-shaped error) at once, but its body stalls:
    /// the head and the first bytes are sent, the rest only after `stall`.
    StalledErrorBody { status: u16, stall: Duration },
    /// A report call answers normally after this delay.
    Delay(Duration),
    /// A download answers normally after this delay.
    DownloadDelay(Duration),
    /// A download answers this status.
    DownloadStatus(u16),
    /// A download announces the whole CSV in its `Content-Length`, sends the whole lines of its
    /// first half and closes the connection, as a download cut off mid-way does.
    TruncatedDownload,
    /// A download sends the whole lines of the first half of the CSV in chunked encoding and
    /// closes the connection without the terminating zero-length chunk.
    UnterminatedChunks,
    /// The CSV lacks a required column and has garbage in another: in the mission report,
    /// `Organized` is missing and `Peer-to-peer` is `n/a`; in another, its second count is
    /// missing and its first is `n/a`. Applies to a download, or to the body of a report call
    /// answered under [`Fault::DirectCsv`].
    MalformedCsv,
    /// A well-formed CSV of at least this many bytes; applies like [`Fault::MalformedCsv`].
    OversizedCsv(usize),
    /// A well-formed CSV with this many rows of distinct days (or entities), whatever the period;
    /// applies like [`Fault::MalformedCsv`].
    ManyRows(usize),
    /// The `302`'s `Location` is this URL instead of the simulator's own download.
    ForeignRedirect(String),
    /// A `302` without `Location`.
    MissingLocation,
    /// The report call answers `200` with the CSV (and ETag) itself, as some deployments do.
    DirectCsv,
}

impl Simulator {
    /// Starts a simulator with [`SimulatorConfig::default`].
    pub async fn start() -> io::Result<Simulator> {
        Simulator::start_with(SimulatorConfig::default()).await
    }

    /// Binds `127.0.0.1:0` and serves on the current actix runtime. The socket is listening
    /// when this returns, so the first call cannot race the start-up.
    pub async fn start_with(config: SimulatorConfig) -> io::Result<Simulator> {
        let refresh = match config.refresh_date.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<Day>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refresh_date {text:?} is not a YYYY-MM-DD date"),
                )
            })?),
        };
        let workers = config.workers.max(1);
        let state = web::Data::new(Shared::new(config, refresh));
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(entra::routes)
                .configure(handlers::routes)
                .service(control::scope())
        })
        .workers(workers)
        // The embedding process (the gateway in --demo) owns the signals and decides when the
        // simulator stops: it must outlive the gateway's graceful drain.
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
        let port = server
            .addrs()
            .first()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("the simulator bound no address"))?;
        state.set_origin(format!("http://127.0.0.1:{port}"));
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Simulator {
            shared: state.into_inner(),
            handle,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/v1.0`, what the gateway's `--graph-base-url` should be.
    pub fn graph_base_url(&self) -> String {
        format!("{}/v1.0", self.origin())
    }

    /// Queues `fault` for the next `times` calls it concerns.
    pub fn fail_next(&self, times: u32, fault: Fault) {
        self.shared.lock().queue_fault(fault, Some(times));
    }

    /// Queues `fault` for every call it concerns until [`Simulator::clear_faults`]. Faults queued
    /// after it for the same calls never get their turn.
    pub fn fail_always(&self, fault: Fault) {
        self.shared.lock().queue_fault(fault, None);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    /// Report calls with exactly this token get `401 InvalidAuthenticationToken`, as Graph
    /// answers a token whose signature does not verify.
    pub fn reject_token(&self, token: &str) {
        self.shared.lock().reject(token);
    }

    /// Report calls of `function` with `token` get `403 Forbidden`, as for a user whose role
    /// lets them read the summary reports but not this one; its other reports are served.
    pub fn forbid_report(&self, token: &str, function: &str) {
        self.shared.lock().forbid(token, function);
    }

    /// Publishes a new data version: every tenant's counts and ETags change.
    /// Links already issued keep serving the version they were issued for.
    pub fn advance_data(&self) {
        self.shared.lock().version += 1;
    }

    /// Replaces the throttling limits (`None` turns throttling off). Every window starts empty.
    pub fn set_limits(&self, limits: Option<GraphLimits>) {
        self.shared.lock().books.set_limits(limits);
    }

    pub fn limits(&self) -> Option<GraphLimits> {
        self.shared.lock().books.limits()
    }

    /// Sets how many users (sites, groups, teams) every tenant has from now on: the rows of a
    /// per-entity report. Their ETags change; links already issued keep their rows.
    pub fn set_entities(&self, entities: usize) {
        self.shared.lock().entities = entities;
    }

    pub fn entities(&self) -> usize {
        self.shared.lock().entities
    }

    /// Report calls answered `429` for being over a limit (not those of [`Fault::Status`]).
    pub fn throttled_calls(&self) -> usize {
        self.shared.lock().books.throttled
    }

    pub fn report_calls(&self) -> usize {
        self.shared.lock().report_calls
    }

    pub fn download_calls(&self) -> usize {
        self.shared.lock().download_calls
    }

    /// The last 1000 calls, most recent last.
    pub fn calls(&self) -> Vec<SeenCall> {
        self.shared.lock().calls()
    }

    /// Zeroes the counters (Entra ID's too) and empties the call log and the token requests;
    /// faults, rejected tokens and the throttling windows stay.
    pub fn reset_counters(&self) {
        self.shared.lock().reset_counters();
    }

    /// The CSV of `getSkypeForBusinessActivityCounts` a download for `token` would serve now
    /// (without faults), so a test can compute the report the gateway should answer.
    pub fn report_csv(&self, token: &str, period: Period) -> Vec<u8> {
        self.mission_data(token, period).csv(CsvShape::Valid)
    }

    /// The ETag Graph would answer for `token` and `period` now on
    /// `getSkypeForBusinessActivityCounts`, quotes included.
    pub fn etag(&self, token: &str, period: Period) -> String {
        self.mission_data(token, period).etag()
    }

    /// The CSV a download of `function` (the catalog's name, in any case) for `token` and
    /// `window` would serve now, without faults; `None` if Graph would refuse the call: a
    /// function not in the catalog, or a date for one that takes only a period.
    pub fn catalog_csv(
        &self,
        token: &str,
        function: &str,
        window: impl Into<Window>,
    ) -> Option<Vec<u8>> {
        let data = self.report_data(token, function, window.into())?;
        Some(data.csv(CsvShape::Valid))
    }

    /// The ETag Graph would answer now for `function`, `token` and `window`, quotes included;
    /// `None` as for [`Simulator::catalog_csv`].
    pub fn catalog_etag(
        &self,
        token: &str,
        function: &str,
        window: impl Into<Window>,
    ) -> Option<String> {
        Some(self.report_data(token, function, window.into())?.etag())
    }

    fn mission_data(&self, token: &str, period: Period) -> ReportData {
        self.report_data(token, MISSION, Window::Period(period))
            .expect("the mission report is in the catalog")
    }

    fn report_data(&self, token: &str, function: &str, window: Window) -> Option<ReportData> {
        let spec = spec_of(function)?;
        if matches!(window, Window::Date(_)) && spec.parameter != Parameter::PeriodOrDate {
            return None;
        }
        let state = self.shared.lock();
        Some(ReportData {
            tenant: handlers::tenant_of(token),
            spec,
            window,
            version: state.version,
            refresh: self.shared.refresh_day(),
            entities: state.entities,
        })
    }

    /// Stops at once, cutting calls in flight, as when Graph becomes unreachable.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A JWT-shaped token (`header.payload.signature`, base64url) with `tid` and, when given, `exp`,
/// for tests and the demo. Its signature is not real, so only the simulator accepts it. Each
/// call returns a different token (a random `uti` claim), even for the same tenant and expiry.
///
/// It names no app, so Graph's limits count it as an app of its own.
pub fn test_token(tenant: &str, exp: Option<u64>) -> String {
    jwt(tenant, exp, serde_json::Map::new())
}

/// Like [`test_token`], for the app `app`: a v1 token with its `appid` claim. Tokens of the same
/// tenant and app share Graph's per-app limit.
pub fn test_app_token(tenant: &str, app: &str, exp: Option<u64>) -> String {
    let mut claims = serde_json::Map::new();
    claims.insert("ver".into(), "1.0".into());
    claims.insert("appid".into(), app.into());
    jwt(tenant, exp, claims)
}

fn jwt(
    tenant: &str,
    exp: Option<u64>,
    mut payload: serde_json::Map<String, serde_json::Value>,
) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "simulator"});
    payload.insert("aud".into(), "https://graph.microsoft.com".into());
    payload.insert("tid".into(), tenant.into());
    payload.insert(
        "uti".into(),
        uuid::Uuid::new_v4().simple().to_string().into(),
    );
    if let Some(exp) = exp {
        payload.insert("exp".into(), exp.into());
    }
    let payload = serde_json::Value::Object(payload);
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(payload.to_string()),
        b64.encode(b"simulator-signature"),
    )
}
