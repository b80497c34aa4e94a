//! Configuration: every setting is a flag and an environment variable, parsed and checked once
//! at start-up so that a bad value stops the program with one clear line.

use std::{fmt, net::SocketAddr, num::NonZeroUsize, path::PathBuf, time::Duration};

use clap::{CommandFactory, FromArgMatches, Parser, parser::ValueSource};
use url::Url;

use crate::{
    entra::{AppSettings, Certificate, Credential},
    graph::Allowlist,
    service::Rate,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "skype-gateway",
    version,
    about = "Microsoft Graph's Skype for Business activity-count report as cached JSON"
)]
pub struct Config {
    /// Address to listen on [default with --demo: 127.0.0.1:8080].
    #[arg(long, env = "SKYPE_GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Microsoft Graph base URL, up to and including the version segment.
    #[arg(long, env = "SKYPE_GATEWAY_GRAPH_BASE_URL", default_value = "https://graph.microsoft.com/v1.0", value_parser = parse_base_url)]
    pub graph_base_url: Url,

    /// Origins the report download may be fetched from, comma-separated; `*.` = any subdomain.
    #[arg(long, env = "SKYPE_GATEWAY_DOWNLOAD_ALLOWLIST", default_value = "https://*.office.com,https://*.office365.com", value_parser = Allowlist::parse)]
    pub download_allowlist: Allowlist,

    /// How long a report is served from cache without asking Graph.
    #[arg(long, env = "SKYPE_GATEWAY_FRESH_TTL", default_value = "15m", value_parser = parse_duration)]
    pub fresh_ttl: Duration,

    /// How long a cached report may still be served when Graph fails or throttles.
    #[arg(long, env = "SKYPE_GATEWAY_STALE_TTL", default_value = "24h", value_parser = parse_duration)]
    pub stale_ttl: Duration,

    /// Upper bound of the report cache, in bytes.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_CACHE_MAX_BYTES",
        default_value_t = 268_435_456
    )]
    pub cache_max_bytes: u64,

    /// Deadline for one report request to Graph, retries and download included.
    #[arg(long, env = "SKYPE_GATEWAY_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Largest CSV download accepted, in bytes.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_MAX_REPORT_BYTES",
        default_value_t = 10_485_760
    )]
    pub max_report_bytes: usize,

    /// Largest CSV download accepted for a report with a row per user, site, group or team
    /// (the `*Detail` reports), in bytes; its JSON answer may take up to four times as much.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_MAX_DETAIL_REPORT_BYTES",
        default_value_t = 67_108_864
    )]
    pub max_detail_report_bytes: usize,

    /// Retries of a failed Graph call (429, 502, 503, 504, connection errors).
    #[arg(long, env = "SKYPE_GATEWAY_MAX_RETRIES", default_value_t = 2)]
    pub max_retries: u32,

    /// Longest `Retry-After` or back-off the gateway waits before a retry.
    #[arg(long, env = "SKYPE_GATEWAY_MAX_RETRY_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub max_retry_wait: Duration,

    /// Worker threads (default: number of CPUs).
    #[arg(long, env = "SKYPE_GATEWAY_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Most Graph calls in flight at once, across all workers.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_MAX_CONCURRENT_UPSTREAM",
        default_value = "16"
    )]
    pub max_concurrent_upstream: NonZeroUsize,

    /// Graph's budget per app and tenant: the most report calls started for one (tenant, app,
    /// report function) in any sliding window of this length, retries included.
    #[arg(long, env = "SKYPE_GATEWAY_GRAPH_BUDGET", default_value = "14/10m", value_parser = Rate::parse)]
    pub graph_budget: Rate,

    /// Graph's budget per tenant, all apps: the most report calls started for one (tenant,
    /// report function) in any sliding window of this length.
    #[arg(long, env = "SKYPE_GATEWAY_GRAPH_TENANT_BUDGET", default_value = "40/10m", value_parser = Rate::parse)]
    pub graph_tenant_budget: Rate,

    /// Calls of an app's window that revalidations of entries a known user could be served
    /// stale may not spend: they are kept for tokens with no other way in.
    #[arg(long, env = "SKYPE_GATEWAY_GRAPH_BUDGET_RESERVE", default_value_t = 4)]
    pub graph_budget_reserve: u32,

    /// Most report calls waiting for a free upstream slot; beyond it a request is answered 503
    /// `overloaded` at once (or STALE, where a stale copy may be served).
    #[arg(long, env = "SKYPE_GATEWAY_MAX_QUEUED_UPSTREAM", default_value_t = 64)]
    pub max_queued_upstream: usize,

    /// Most client connections open at once, in total across workers (each worker takes an
    /// equal share, rounded up). Beyond it, new connections wait in the listen backlog until
    /// one closes.
    #[arg(long, env = "SKYPE_GATEWAY_MAX_CONNECTIONS", default_value_t = 25_000)]
    pub max_connections: usize,

    /// How long a client may take to send a request head, counted from its first byte (or from
    /// the connection's start for its first request); a request body nobody reads is cut as
    /// soon. Applies to every request on a connection, not only the first.
    #[arg(long, env = "SKYPE_GATEWAY_CLIENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub client_timeout: Duration,

    /// How long an idle keep-alive connection stays open between requests.
    #[arg(long, env = "SKYPE_GATEWAY_KEEP_ALIVE", default_value = "5s", value_parser = parse_duration)]
    pub keep_alive: Duration,

    /// After SIGTERM, how long /readyz answers 503 while requests are still served.
    #[arg(long, env = "SKYPE_GATEWAY_SHUTDOWN_DRAIN", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_drain: Duration,

    /// How long an access log line may wait in the buffer before its writer writes it out; all
    /// that is buffered is written when the gateway stops.
    #[arg(long, env = "SKYPE_GATEWAY_ACCESS_LOG_INTERVAL", default_value = "50ms", value_parser = parse_duration)]
    pub access_log_interval: Duration,

    /// After the drain, how long in-flight requests may take to finish.
    #[arg(long, env = "SKYPE_GATEWAY_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Redis (or Valkey) shared by every replica: validated tokens, report entries, the single
    /// flight of fetches, Graph's pauses and budget windows. `redis://[user:pass@]host:port/db`,
    /// or `rediss://` for TLS. Without it, everything stays in this process.
    #[arg(long, env = "SKYPE_GATEWAY_REDIS_URL", hide_env_values = true, value_parser = RedisUrlParser)]
    pub redis_url: Option<RedisUrl>,

    /// The secret every replica shares (at least 32 bytes): the keys that name and seal what is
    /// kept in Redis are derived from it. Required with --redis-url.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_SHARED_SECRET",
        hide_env_values = true,
        conflicts_with = "shared_secret_file"
    )]
    pub shared_secret: Option<Secret>,

    /// A file holding the shared secret (one trailing newline is ignored).
    #[arg(long, env = "SKYPE_GATEWAY_SHARED_SECRET_FILE")]
    pub shared_secret_file: Option<PathBuf>,

    /// Prefix of every key the gateway writes in Redis.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_REDIS_KEY_PREFIX",
        default_value = "skype-gateway:"
    )]
    pub redis_key_prefix: String,

    /// Longest wait for one Redis command; a command that takes longer counts as Redis failing.
    #[arg(long, env = "SKYPE_GATEWAY_REDIS_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// How the gateway calls Graph: `passthrough` forwards each caller's Graph token; `app`
    /// verifies callers' tokens for the gateway's own API and calls Graph as the gateway's app.
    #[arg(long, env = "SKYPE_GATEWAY_GRAPH_AUTH", value_enum, default_value_t = GraphAuth::Passthrough)]
    pub graph_auth: GraphAuth,

    /// App mode: Entra ID's authority (https; http only for a loopback host).
    #[arg(long, env = "SKYPE_GATEWAY_AUTHORITY_URL", default_value = "https://login.microsoftonline.com", value_parser = parse_base_url)]
    pub authority_url: Url,

    /// App mode: the gateway's app registration (its application id).
    #[arg(long, env = "SKYPE_GATEWAY_CLIENT_ID")]
    pub client_id: Option<String>,

    /// App mode: the app registration's client secret.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_CLIENT_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["client_secret_file", "client_certificate_file", "client_assertion_file"]
    )]
    pub client_secret: Option<Secret>,

    /// App mode: a file holding the client secret, read again for each token request.
    #[arg(long, env = "SKYPE_GATEWAY_CLIENT_SECRET_FILE", conflicts_with_all = ["client_certificate_file", "client_assertion_file"])]
    pub client_secret_file: Option<PathBuf>,

    /// App mode: a PEM file with a certificate registered for the app and its RSA private key
    /// (PKCS#8 or PKCS#1, either order); the gateway signs client assertions with it.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_CLIENT_CERTIFICATE_FILE",
        conflicts_with = "client_assertion_file"
    )]
    pub client_certificate_file: Option<PathBuf>,

    /// App mode: a federated token file (workload identity), read again for each token request.
    #[arg(long, env = "SKYPE_GATEWAY_CLIENT_ASSERTION_FILE")]
    pub client_assertion_file: Option<PathBuf>,

    /// App mode: the `aud` values callers' tokens may carry, comma-separated (the gateway
    /// API's client id for v2 tokens, its Application ID URI for v1).
    #[arg(long, env = "SKYPE_GATEWAY_CALLER_AUDIENCE", value_delimiter = ',')]
    pub caller_audience: Vec<String>,

    /// App mode: the role (in `roles`) or delegated scope (in `scp`) a caller's token must grant.
    #[arg(
        long,
        env = "SKYPE_GATEWAY_CALLER_ROLE",
        default_value = "Reports.Read"
    )]
    pub caller_role: String,

    /// App mode: the tenant ids the gateway serves, comma-separated.
    #[arg(long, env = "SKYPE_GATEWAY_TENANTS", value_delimiter = ',')]
    pub tenants: Vec<String>,

    /// Origins of browser apps that may call the gateway (CORS), comma-separated, each
    /// `scheme://host[:port]`; none by default, so browsers allow same-origin calls only.
    #[arg(long, env = "SKYPE_GATEWAY_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Start an embedded Graph simulator on loopback and point the gateway at it.
    /// The variable takes true/false, 1/0, yes/no, on/off.
    #[arg(long, env = "SKYPE_GATEWAY_DEMO", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,

    /// App-only settings that have a default and were given all the same (flag or variable),
    /// by flag name: refused without `--graph-auth app`.
    #[arg(skip)]
    pub app_defaults_given: Vec<&'static str>,

    /// What start-up should warn about: settings that are ignored (an unknown
    /// `SKYPE_GATEWAY_*` variable, a flag `--demo` overrides). Logged once the logger is up.
    #[arg(skip)]
    pub warnings: Vec<String>,
}

/// Where `--demo` listens unless told otherwise: it accepts any token, so not beyond this machine.
pub const DEMO_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

impl Config {
    /// The configuration of this process' command line and environment; prints clap's message
    /// and exits on a value that does not parse.
    pub fn load() -> Config {
        Config::load_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Like [`Config::load`], from `args` (the program name first) and the environment.
    pub fn load_from<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Config::command().try_get_matches_from(args)?;
        let mut config =
            Config::from_arg_matches(&matches).map_err(|e| e.format(&mut Config::command()))?;
        // Only clap knows whether `listen` is its default or was given (flag or variable).
        if config.demo && matches.value_source("listen") == Some(ValueSource::DefaultValue) {
            config.listen = DEMO_LISTEN;
        }
        for (id, flag) in [
            (
                "authority_url",
                "--authority-url (SKYPE_GATEWAY_AUTHORITY_URL)",
            ),
            ("caller_role", "--caller-role (SKYPE_GATEWAY_CALLER_ROLE)"),
        ] {
            if matches.value_source(id) != Some(ValueSource::DefaultValue) {
                config.app_defaults_given.push(flag);
            }
        }
        config.warnings = unknown_variables(std::env::vars_os().map(|(name, _)| name));
        if config.demo {
            config
                .warnings
                .extend(demo_overrides(&matches, config.graph_auth));
        }
        Ok(config)
    }

    /// Checks that hold between settings; the message names the flags involved.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--fresh-ttl", self.fresh_ttl),
            ("--upstream-timeout", self.upstream_timeout),
            ("--client-timeout", self.client_timeout),
            ("--keep-alive", self.keep_alive),
        ];
        for (flag, value) in positive {
            if value.is_zero() {
                return Err(format!("{flag} must be greater than zero"));
            }
        }
        if self.stale_ttl < self.fresh_ttl {
            return Err("--stale-ttl must not be shorter than --fresh-ttl".into());
        }
        if self.cache_max_bytes == 0 {
            return Err("--cache-max-bytes must be greater than zero".into());
        }
        // The reserve applies to both windows: above half of either, revalidations could never
        // pass it, and known users would be served stale until their entries expire.
        for (flag, rate) in [
            ("--graph-budget", self.graph_budget),
            ("--graph-tenant-budget", self.graph_tenant_budget),
        ] {
            if self.graph_budget_reserve > rate.calls / 2 {
                return Err(format!(
                    "--graph-budget-reserve {} must be at most half of {flag} ({} calls)",
                    self.graph_budget_reserve, rate.calls
                ));
            }
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be greater than zero".into());
        }
        if self.max_report_bytes == 0 {
            return Err("--max-report-bytes must be greater than zero".into());
        }
        if self.max_detail_report_bytes == 0 {
            return Err("--max-detail-report-bytes must be greater than zero".into());
        }
        self.validate_graph_auth()?;
        if self.redis_url.is_some() {
            if self.redis_timeout.is_zero() {
                return Err("--redis-timeout must be greater than zero".into());
            }
            let secret = self.shared_secret()?;
            let length = secret.as_ref().map_or(0, |s| s.0.len());
            if length < MIN_SHARED_SECRET {
                return Err(format!(
                    "--redis-url (SKYPE_GATEWAY_REDIS_URL) needs --shared-secret \
                     (SKYPE_GATEWAY_SHARED_SECRET) or --shared-secret-file of at least \
                     {MIN_SHARED_SECRET} bytes; got {length}"
                ));
            }
        }
        Ok(())
    }

    /// The app-only settings with `--graph-auth app`: the credential read and checked (a
    /// certificate's key against the certificate, a file's presence), the tenants lowercase.
    pub fn app_settings(&self) -> Result<Option<AppSettings>, String> {
        if self.graph_auth != GraphAuth::App {
            return Ok(None);
        }
        let credential = if let Some(secret) = &self.client_secret {
            Credential::Secret(secret.clone())
        } else if let Some(path) = &self.client_secret_file {
            Credential::SecretFile(path.clone())
        } else if let Some(path) = &self.client_certificate_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("--client-certificate-file {}: {e}", path.display()))?;
            Credential::Certificate(Box::new(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("--client-certificate-file {}: {e}", path.display()))?,
            ))
        } else if let Some(path) = &self.client_assertion_file {
            Credential::AssertionFile(path.clone())
        } else {
            return Err(
                "--graph-auth app needs one credential: --client-secret, --client-secret-file, \
                 --client-certificate-file or --client-assertion-file"
                    .into(),
            );
        };
        credential.check()?;
        if self.tenants.is_empty() {
            return Err("--graph-auth app needs --tenants (SKYPE_GATEWAY_TENANTS)".into());
        }
        Ok(Some(AppSettings {
            authority: self.authority_url.clone(),
            client_id: self.client_id.clone().unwrap_or_default(),
            credential,
            audiences: self
                .caller_audience
                .iter()
                .map(|a| a.trim().to_owned())
                .collect(),
            role: self.caller_role.clone(),
            tenants: self
                .tenants
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            timeout: self.upstream_timeout.min(ENTRA_TIMEOUT),
            retry: crate::graph::RetryPolicy {
                max_retries: self.max_retries,
                max_wait: self.max_retry_wait,
            },
        }))
    }

    /// Checks of app-only mode's settings, and that none is given without it.
    fn validate_graph_auth(&self) -> Result<(), String> {
        let app_only = [
            (
                "--client-id (SKYPE_GATEWAY_CLIENT_ID)",
                self.client_id.is_some(),
            ),
            (
                "--client-secret (SKYPE_GATEWAY_CLIENT_SECRET)",
                self.client_secret.is_some(),
            ),
            (
                "--client-secret-file (SKYPE_GATEWAY_CLIENT_SECRET_FILE)",
                self.client_secret_file.is_some(),
            ),
            (
                "--client-certificate-file (SKYPE_GATEWAY_CLIENT_CERTIFICATE_FILE)",
                self.client_certificate_file.is_some(),
            ),
            (
                "--client-assertion-file (SKYPE_GATEWAY_CLIENT_ASSERTION_FILE)",
                self.client_assertion_file.is_some(),
            ),
            (
                "--caller-audience (SKYPE_GATEWAY_CALLER_AUDIENCE)",
                !self.caller_audience.is_empty(),
            ),
            (
                "--tenants (SKYPE_GATEWAY_TENANTS)",
                !self.tenants.is_empty(),
            ),
        ];
        if self.graph_auth == GraphAuth::Passthrough {
            let given = app_only
                .iter()
                .filter(|(_, given)| *given)
                .map(|(flag, _)| *flag)
                .chain(self.app_defaults_given.iter().copied());
            if let Some(flag) = given.into_iter().next() {
                return Err(format!(
                    "{flag} applies only with --graph-auth app (SKYPE_GATEWAY_GRAPH_AUTH=app)"
                ));
            }
            return Ok(());
        }
        // `--demo` brings its own app registration, tenants and audience.
        if self.demo {
            return Ok(());
        }
        let client_id = self.client_id.as_deref().unwrap_or_default();
        if client_id.trim().is_empty() {
            return Err("--graph-auth app needs --client-id (SKYPE_GATEWAY_CLIENT_ID)".into());
        }
        if self.tenants.is_empty() {
            return Err(
                "--graph-auth app needs --tenants (SKYPE_GATEWAY_TENANTS): the tenant ids it serves"
                    .into(),
            );
        }
        if let Some(bad) = self.tenants.iter().find(|t| !is_tenant_id(t.trim())) {
            return Err(format!(
                "--tenants (SKYPE_GATEWAY_TENANTS): {bad:?} is not a tenant id (a GUID such as \
                 72f988bf-86f1-41af-91ab-2d7cd011db47)"
            ));
        }
        if self.caller_audience.iter().all(|a| a.trim().is_empty()) {
            return Err(
                "--graph-auth app needs --caller-audience (SKYPE_GATEWAY_CALLER_AUDIENCE): \
                 the gateway API's client id or Application ID URI"
                    .into(),
            );
        }
        if self.caller_audience.iter().any(|a| a.trim().is_empty()) {
            return Err(
                "--caller-audience (SKYPE_GATEWAY_CALLER_AUDIENCE) has an empty value".into(),
            );
        }
        if self.caller_role.trim().is_empty() || self.caller_role.contains(' ') {
            return Err(format!(
                "--caller-role (SKYPE_GATEWAY_CALLER_ROLE) {:?} must be one role name",
                self.caller_role
            ));
        }
        Ok(())
    }

    /// The shared secret, from `--shared-secret` or read from `--shared-secret-file`.
    pub fn shared_secret(&self) -> Result<Option<Secret>, String> {
        if let Some(secret) = &self.shared_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = &self.shared_secret_file else {
            return Ok(None);
        };
        let mut bytes = std::fs::read(path)
            .map_err(|e| format!("--shared-secret-file {}: {e}", path.display()))?;
        // Files written by `echo` or an editor end with a newline that is not part of the secret.
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Ok(Some(Secret(bytes)))
    }

    /// The defaults, as if no flag or variable were given; tests start from here.
    pub fn defaults() -> Config {
        Config::parse_from(["skype-gateway"])
    }
}

/// The prefix of every variable the gateway reads.
const ENV_PREFIX: &str = "SKYPE_GATEWAY_";

/// A warning for each `SKYPE_GATEWAY_*` variable among `names` that no setting reads (a typo
/// would otherwise leave its setting at the default without a word), naming the closest one.
fn unknown_variables(names: impl Iterator<Item = std::ffi::OsString>) -> Vec<String> {
    let command = Config::command();
    let known: Vec<(&str, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?;
            Some((env, format!("--{}", arg.get_long()?)))
        })
        .collect();
    let mut unknown: Vec<String> = names
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.starts_with(ENV_PREFIX))
        .filter(|name| !known.iter().any(|(env, _)| env == name))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            let closest = known
                .iter()
                .map(|(env, flag)| (edit_distance(&name, env), env, flag))
                .min_by_key(|(distance, ..)| *distance)
                // Within a third of the name past its prefix: a typo, not another setting.
                .filter(|(distance, ..)| *distance <= (name.len() - ENV_PREFIX.len()).div_ceil(3));
            match closest {
                Some((_, env, flag)) => format!(
                    "{name} is not a setting of skype-gateway and is ignored; did you mean {env} ({flag})?"
                ),
                None => format!("{name} is not a setting of skype-gateway and is ignored"),
            }
        })
        .collect()
}

/// Levenshtein's distance between two ASCII-ish names, by bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The settings `--demo` replaces with its simulator's, each with whether its value may be
/// printed.
const DEMO_OVERRIDES: &[(&str, bool)] = &[("graph_base_url", true), ("download_allowlist", true)];

/// In app-only mode `--demo` also brings its own app registration, credential and tenants.
const DEMO_APP_OVERRIDES: &[(&str, bool)] = &[
    ("authority_url", true),
    ("client_id", true),
    ("client_secret", false),
    ("client_secret_file", true),
    ("client_certificate_file", true),
    ("client_assertion_file", true),
    ("caller_audience", true),
    ("tenants", true),
];

/// A warning for each setting given (by flag or variable) that `--demo` overrides.
fn demo_overrides(matches: &clap::ArgMatches, graph_auth: GraphAuth) -> Vec<String> {
    let command = Config::command();
    let app = if graph_auth == GraphAuth::App {
        DEMO_APP_OVERRIDES
    } else {
        &[]
    };
    DEMO_OVERRIDES
        .iter()
        .chain(app)
        .filter(|(id, _)| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .filter_map(|&(id, printable)| {
            let arg = command.get_arguments().find(|a| a.get_id() == id)?;
            let flag = format!("--{}", arg.get_long()?);
            let env = arg
                .get_env()
                .map(|e| e.to_string_lossy())
                .unwrap_or_default();
            let value = if printable {
                let values: Vec<String> = matches
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                format!(" {}", values.join(","))
            } else {
                String::new()
            };
            Some(format!(
                "{flag} ({env}){value} is ignored: --demo replaces it with its simulator's"
            ))
        })
        .collect()
}

/// How Graph is called: with each caller's own token, or as the gateway's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphAuth {
    Passthrough,
    App,
}

/// The longest one call to Entra ID may take (shorter with a shorter `--upstream-timeout`).
const ENTRA_TIMEOUT: Duration = Duration::from_secs(10);

/// A tenant id: a GUID, as the `tid` claim carries it.
fn is_tenant_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The least shared secret accepted: 256 bits, as much as the keys derived from it.
pub const MIN_SHARED_SECRET: usize = 32;

/// A secret's bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.as_bytes().to_vec()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Parses `--redis-url` with an error that does not repeat the value: clap's own would print
/// the URL, password included.
#[derive(Debug, Clone, Copy)]
struct RedisUrlParser;

impl clap::builder::TypedValueParser for RedisUrlParser {
    type Value = RedisUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RedisUrl, clap::Error> {
        let parsed = value
            .to_str()
            .ok_or_else(|| "is not UTF-8".to_owned())
            .and_then(RedisUrl::parse);
        parsed.map_err(|reason| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--redis-url (SKYPE_GATEWAY_REDIS_URL): {reason}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// A Redis URL, printed without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Url);

impl RedisUrl {
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "redis" | "rediss") || url.host().is_none() {
            return Err("must be redis://host:port/db or rediss://host:port/db".into());
        }
        Ok(RedisUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        write!(f, "RedisUrl({shown})")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = format!("{self:?}");
        f.write_str(&shown["RedisUrl(".len()..shown.len() - 1])
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 15m, 24h)"))
}

fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an absolute http(s) URL".into());
    }
    // Bearer tokens travel to this URL: plain HTTP only where it cannot leave the machine.
    if url.scheme() == "http" && !crate::graph::is_loopback(&url) {
        return Err("must be https (http only for a loopback host)".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not carry a query, a fragment or credentials".into());
    }
    Ok(url)
}

/// An origin as a browser sends it in `Origin`: `scheme://host[:port]`, lowercase, without a
/// default port, so that `https://App.example.com:443` matches what the browser sends.
fn parse_origin(s: &str) -> Result<String, String> {
    const SHAPE: &str = "must be an origin, scheme://host[:port], such as https://app.example.com";
    let url = Url::parse(s.trim()).map_err(|e| format!("{e}: {SHAPE}"))?;
    let bare = url.path() == "/" && !s.trim().ends_with('/');
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !bare
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(SHAPE.into());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("skype-gateway").chain(args.iter().copied());
        Config::load_from(argv).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(
            c.graph_base_url.as_str(),
            "https://graph.microsoft.com/v1.0"
        );
        assert_eq!(c.fresh_ttl, Duration::from_secs(15 * 60));
        assert_eq!(c.stale_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.cache_max_bytes, 268_435_456);
        assert_eq!(c.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.max_report_bytes, 10_485_760);
        assert_eq!(c.max_detail_report_bytes, 64 << 20);
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.max_retry_wait, Duration::from_secs(10));
        assert!(c.workers.is_none() && !c.demo);
        assert_eq!(c.max_connections, 25_000);
        assert_eq!(c.client_timeout, Duration::from_secs(5));
        assert_eq!(c.keep_alive, Duration::from_secs(5));
        assert_eq!(c.max_queued_upstream, 64);
        let ten_minutes = Duration::from_secs(600);
        assert_eq!(
            (c.graph_budget.calls, c.graph_budget.per),
            (14, ten_minutes)
        );
        assert_eq!(
            (c.graph_tenant_budget.calls, c.graph_tenant_budget.per),
            (40, ten_minutes)
        );
        assert_eq!(c.graph_budget_reserve, 4);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_budget_reserve_is_at_most_half_the_budget() {
        let c = parse(&["--graph-budget", "10/1m", "--graph-budget-reserve", "5"]).unwrap();
        assert!(c.validate().is_ok());
        let c = parse(&["--graph-budget", "10/1m", "--graph-budget-reserve", "6"]).unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.contains("--graph-budget-reserve 6"), "{err}");
        assert!(
            parse(&["--graph-budget", "14"])
                .unwrap_err()
                .contains("--graph-budget")
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (&["--fresh-ttl", "soon"][..], "--fresh-ttl"),
            (&["--listen", "localhost"], "--listen"),
            (&["--graph-base-url", "ftp://x"], "--graph-base-url"),
            (
                &["--graph-base-url", "http://graph.example/v1.0"],
                "--graph-base-url",
            ),
            (
                &["--download-allowlist", "http://*.office.com"],
                "--download-allowlist",
            ),
            (
                &["--download-allowlist", "reports.office.com"],
                "--download-allowlist",
            ),
            (&["--workers", "0"], "--workers"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn demo_is_a_flag() {
        assert!(parse(&["--demo"]).unwrap().demo);
    }

    #[test]
    fn demo_listens_on_loopback_unless_listen_is_given() {
        assert_eq!(parse(&["--demo"]).unwrap().listen, DEMO_LISTEN);
        assert_eq!(DEMO_LISTEN.to_string(), "127.0.0.1:8080");
        for listen in ["0.0.0.0:8080", "0.0.0.0:9000"] {
            let config = parse(&["--demo", "--listen", listen]).unwrap();
            assert_eq!(config.listen.to_string(), listen);
        }
        assert_eq!(parse(&[]).unwrap().listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn inconsistent_ttls_are_refused() {
        let c = parse(&["--fresh-ttl", "1h", "--stale-ttl", "10m"]).unwrap();
        assert!(c.validate().unwrap_err().contains("--stale-ttl"));
        let c = parse(&["--fresh-ttl", "0s"]).unwrap();
        assert!(c.validate().unwrap_err().contains("--fresh-ttl"));
    }

    #[test]
    fn redis_needs_a_shared_secret_of_32_bytes() {
        let url = "redis://127.0.0.1:6379/0";
        let err = parse(&["--redis-url", url])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.contains("--shared-secret") && err.contains("got 0"),
            "{err}"
        );
        let short = "s".repeat(31);
        let c = parse(&["--redis-url", url, "--shared-secret", &short]).unwrap();
        assert!(c.validate().unwrap_err().contains("got 31"));
        let secret = "s".repeat(32);
        let c = parse(&["--redis-url", url, "--shared-secret", &secret]).unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.redis_key_prefix, "skype-gateway:");
        assert_eq!(c.redis_timeout, Duration::from_millis(100));
        assert!(
            !format!("{c:?}").contains(&secret),
            "the secret is never printed"
        );
        assert!(
            parse(&["--redis-url", "http://x"])
                .unwrap_err()
                .contains("--redis-url")
        );
    }

    #[test]
    fn the_shared_secret_may_come_from_a_file_without_its_newline() {
        let path = std::env::temp_dir().join(format!("secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, format!("{}\n", "k".repeat(32))).unwrap();
        let file = path.to_str().unwrap();
        let c = parse(&[
            "--redis-url",
            "rediss://redis.example:6380",
            "--shared-secret-file",
            file,
        ])
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.shared_secret().unwrap().unwrap().0.len(), 32);
        std::fs::remove_file(&path).unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.contains("--shared-secret-file"), "{err}");
    }

    #[test]
    fn a_redis_password_is_not_printed() {
        let c = parse(&["--redis-url", "rediss://user:hunter2@redis.example:6380/0"]).unwrap();
        let url = c.redis_url.as_ref().unwrap();
        assert_eq!(url.to_string(), "rediss://user:***@redis.example:6380/0");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn connection_limits_must_be_positive() {
        for (args, flag) in [
            (&["--max-connections", "0"][..], "--max-connections"),
            (&["--client-timeout", "0s"], "--client-timeout"),
            (&["--keep-alive", "0s"], "--keep-alive"),
        ] {
            let err = parse(args).unwrap().validate().unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const APP: [&str; 10] = [
        "--graph-auth",
        "app",
        "--client-id",
        "3f6b2a51-8c1d-4e0f-9a7b-2d5c6e8f1a04",
        "--client-secret",
        "s3cr3t-value",
        "--caller-audience",
        "api://skype-gateway,3f6b2a51-8c1d-4e0f-9a7b-2d5c6e8f1a04",
        "--tenants",
        TENANT,
    ];

    fn app_with(change: impl FnOnce(&mut Vec<&'static str>)) -> Result<Config, String> {
        let mut args = APP.to_vec();
        change(&mut args);
        parse(&args)
    }

    #[test]
    fn app_mode_reads_its_settings_and_lists() {
        let c = app_with(|_| {}).unwrap();
        assert_eq!(c.graph_auth, GraphAuth::App);
        assert!(c.validate().is_ok());
        let settings = c.app_settings().unwrap().unwrap();
        assert_eq!(settings.audiences.len(), 2);
        assert_eq!(settings.tenants, [TENANT]);
        assert_eq!(settings.role, "Reports.Read");
        assert_eq!(
            settings.authority.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        assert!(!format!("{settings:?}").contains("s3cr3t-value"));
        // Tenants compare in lowercase, as `tid` carries them.
        let upper = app_with(|a| a[9] = "72F988BF-86F1-41AF-91AB-2D7CD011DB47").unwrap();
        assert_eq!(upper.app_settings().unwrap().unwrap().tenants, [TENANT]);
    }

    #[test]
    fn app_mode_names_what_it_lacks() {
        let without = |flag: &'static str| {
            app_with(move |a| {
                let at = a.iter().position(|x| *x == flag).unwrap();
                a.drain(at..at + 2);
            })
            .unwrap()
        };
        for (flag, named) in [
            ("--client-id", "--client-id"),
            ("--tenants", "--tenants"),
            ("--caller-audience", "--caller-audience"),
        ] {
            let err = without(flag).validate().unwrap_err();
            assert!(err.contains(named), "{flag}: {err}");
        }
        let err = without("--client-secret").app_settings().unwrap_err();
        assert!(err.contains("one credential"), "{err}");
        let err = app_with(|a| a[9] = "contoso.onmicrosoft.com")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.contains("is not a tenant id"), "{err}");
        let err = app_with(|a| a.extend(["--caller-role", "Reports.Read Other"]))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.contains("--caller-role"), "{err}");
    }

    #[test]
    fn app_mode_takes_one_credential_and_an_https_authority() {
        let two = app_with(|a| a.extend(["--client-certificate-file", "/tmp/cert.pem"]));
        assert!(two.unwrap_err().contains("cannot be used with"));
        let http = app_with(|a| a.extend(["--authority-url", "http://login.example.com"]));
        assert!(http.unwrap_err().contains("https"));
        let loopback = app_with(|a| a.extend(["--authority-url", "http://127.0.0.1:9"]));
        assert!(loopback.unwrap().validate().is_ok());
    }

    #[test]
    fn a_credential_file_that_cannot_be_used_stops_the_start_up() {
        let dir = std::env::temp_dir();
        let missing = dir.join(format!("no-such-{}", std::process::id()));
        let missing = missing.to_str().unwrap().to_owned();
        let missing: &'static str = Box::leak(missing.into_boxed_str());
        for flag in [
            "--client-secret-file",
            "--client-certificate-file",
            "--client-assertion-file",
        ] {
            let c = app_with(|a| {
                a.drain(4..6);
                a.extend([flag, missing]);
            })
            .unwrap();
            let err = c.app_settings().unwrap_err();
            assert!(err.starts_with(flag), "{flag}: {err}");
        }
        let unrelated = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/unrelated-key.pem"
        );
        let c = app_with(|a| {
            a.drain(4..6);
            a.extend(["--client-certificate-file", unrelated]);
        })
        .unwrap();
        let err = c.app_settings().unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn app_only_flags_are_refused_in_passthrough_mode() {
        for args in [
            &["--client-id", "x"][..],
            &["--tenants", TENANT],
            &["--caller-audience", "api://x"],
            &["--client-secret", "x"],
            &["--authority-url", "https://login.microsoftonline.us"],
            &["--caller-role", "Reports.Read"],
        ] {
            let err = parse(args).unwrap().validate().unwrap_err();
            assert!(
                err.contains(args[0]) && err.contains("--graph-auth app"),
                "{err}"
            );
        }
        // The demo in app mode brings its own.
        assert!(
            parse(&["--demo", "--graph-auth", "app"])
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn cors_origins_are_origins_as_browsers_send_them() {
        let config = parse(&[
            "--cors-origins",
            "https://App.Example.com:443,http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(
            config.cors_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert!(Config::defaults().cors_origins.is_empty());
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "app.example.com",
            "*",
        ] {
            let err = parse(&["--cors-origins", bad]).unwrap_err();
            assert!(err.contains("--cors-origins"), "{bad}: {err}");
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_closest_known_variable_is_named_for_a_typo_only() {
        let warnings = unknown_variables(
            [
                "SKYPE_GATEWAY_LISTN",
                "SKYPE_GATEWAY_UNRELATED_THING",
                "SKYPE_GATEWAY_LISTEN",
                "OTHER_LISTN",
            ]
            .into_iter()
            .map(Into::into),
        );
        assert_eq!(
            warnings,
            [
                "SKYPE_GATEWAY_LISTN is not a setting of skype-gateway and is ignored; did you mean SKYPE_GATEWAY_LISTEN (--listen)?",
                "SKYPE_GATEWAY_UNRELATED_THING is not a setting of skype-gateway and is ignored",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
