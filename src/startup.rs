//! `Application`: binds the listener, wires the caches, the Graph client and the routes into
//! an actix-web server, and runs it until a signal asks for a graceful shutdown.

use std::{net::TcpListener, rc::Rc, sync::Arc, time::Duration};

use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactoryExt as _, map_config};
use actix_web::{
    App,
    dev::{AppConfig, fn_service},
    middleware::{Condition, from_fn},
    web,
};
use log::info;

mod demo;

use crate::{
    cache::{Caches, Freshness},
    config::Config,
    connection::{self, ClientDeadlines, Deadlined},
    cors,
    entra::AppAuth,
    graph::{GraphClient, RetryPolicy, UpstreamSettings, tls_config},
    metrics::Metrics,
    routes::{self, health::Readiness},
    service::{AdmissionSettings, BudgetSettings, ReportService, Reports, ServiceSettings},
    shared::{SharedCache, SharedSettings},
    telemetry,
};

/// How much larger than its download a detail report's JSON answer may grow: field names
/// repeat on every row, so JSON takes two to four times the CSV's bytes for real reports; a
/// download of mostly empty cells, which would take tens of times as much, is refused.
const DETAIL_JSON_PER_CSV_BYTE: usize = 4;

/// The most a detail report's answer may take: four times its download, and never more than
/// half of the report cache, which one entry would otherwise empty of every other tenant.
fn detail_json_limit(config: &Config) -> usize {
    let half_cache = usize::try_from(config.cache_max_bytes / 2).unwrap_or(usize::MAX);
    config
        .max_detail_report_bytes
        .saturating_mul(DETAIL_JSON_PER_CSV_BYTE)
        .min(half_cache)
}

pub struct Application {
    port: u16,
    listen: std::net::SocketAddr,
    server: Server,
    readiness: Readiness,
    shutdown_drain: Duration,
    /// Kept alive for the server's lifetime in `--demo` mode.
    demo: Option<demo::Demo>,
}

impl Application {
    pub async fn build(mut config: Config) -> std::io::Result<Application> {
        let demo = if config.demo {
            Some(demo::Demo::start(&mut config).await?)
        } else {
            None
        };
        let listener = bind(config.listen)?;
        let port = listener.local_addr()?.port();

        let metrics = Arc::new(Metrics::new());
        let freshness = Freshness {
            fresh: config.fresh_ttl,
            stale: config.stale_ttl,
        };
        let caches = Caches::new(config.cache_max_bytes, freshness);
        metrics.set_cache_max_bytes(config.cache_max_bytes);
        let budget = BudgetSettings {
            per_app: config.graph_budget,
            per_tenant: config.graph_tenant_budget,
            reserve: config.graph_budget_reserve,
        };
        let shared = match &config.redis_url {
            Some(url) => {
                let secret = config
                    .shared_secret()
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other("--redis-url needs --shared-secret"))?;
                let shared = SharedCache::new(
                    SharedSettings {
                        url: url.as_str().to_owned(),
                        secret: secret.0,
                        prefix: config.redis_key_prefix.clone(),
                        timeout: config.redis_timeout,
                        budget,
                        stale_ttl: config.stale_ttl,
                        fresh_ttl: config.fresh_ttl,
                        upstream_timeout: config.upstream_timeout,
                    },
                    Arc::clone(&metrics),
                )
                .map_err(std::io::Error::other)?;
                shared.watch();
                info!("sharing the cache on Redis at {url}");
                Some(shared)
            }
            None => None,
        };
        let tls = tls_config();
        let app_auth = match config.app_settings().map_err(std::io::Error::other)? {
            Some(settings) => {
                info!(
                    "app-only mode: callers' tokens for {} verified here, Graph called as app {} for {} tenant(s)",
                    settings.audiences.join(","),
                    settings.client_id,
                    settings.tenants.len()
                );
                Some(Arc::new(AppAuth::new(
                    settings,
                    Arc::clone(&tls),
                    Arc::clone(&metrics),
                )))
            }
            None => None,
        };
        let service = ReportService::new(
            caches,
            Arc::clone(&metrics),
            ServiceSettings {
                upstream_timeout: config.upstream_timeout,
                detail_json_limit: detail_json_limit(&config),
                admission: AdmissionSettings {
                    capacity: config.max_concurrent_upstream.get(),
                    max_queued: config.max_queued_upstream,
                },
                retry: RetryPolicy {
                    max_retries: config.max_retries,
                    max_wait: config.max_retry_wait,
                },
                budget,
            },
            shared,
        );
        let service = Arc::new(match app_auth {
            Some(app) => service.with_app(app),
            None => service,
        });
        let settings = Arc::new(UpstreamSettings {
            graph_base_url: config.graph_base_url.clone(),
            allowlist: config.download_allowlist.clone(),
            timeout: config.upstream_timeout,
            max_report_bytes: config.max_report_bytes,
            max_detail_report_bytes: config.max_detail_report_bytes,
        });
        let readiness = Readiness::new();
        let readiness_data = web::Data::new(readiness.clone());
        let metrics_data = web::Data::from(Arc::clone(&metrics));
        let evicted = metrics.connections_evicted.clone();
        let cors_origins = config.cors_origins.clone();
        let cors_on = !cors_origins.is_empty();
        if cors_on {
            info!("CORS: browser apps on {} may call", cors_origins.join(", "));
        }

        let app = move || {
            // awc's client is per worker (not Send); the service (with its admission point and
            // Graph's budget) and the metrics are shared.
            let client = GraphClient::new(
                Arc::clone(&settings),
                Arc::clone(&metrics),
                Arc::clone(&tls),
            );
            App::new()
                .app_data(web::Data::new(Reports::new(Arc::clone(&service), client)))
                .app_data(metrics_data.clone())
                .app_data(readiness_data.clone())
                // Inside the telemetry, so preflights are logged and counted too.
                .wrap(Condition::new(cors_on, cors::middleware(&cors_origins)))
                .wrap(Condition::new(cors_on, from_fn(cors::finish)))
                .wrap(from_fn(telemetry::observe))
                .wrap(from_fn(connection::track))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        };
        let deadlines = ClientDeadlines {
            request: config.client_timeout,
            keep_alive: config.keep_alive,
        };
        let workers = config.workers.map_or_else(default_workers, |w| w.get());
        let limits = connection::within_open_files(config.max_connections);
        let held_per_worker = limits.held.div_ceil(workers);
        let mut builder = Server::build()
            .workers(workers)
            // actix counts per worker; the flag is a total. Past the connections held, the
            // workers' own `Connections` make room, so actix pauses accepting only when
            // the sockets beyond them run out too.
            .max_concurrent_connections((limits.accepted / workers).max(held_per_worker + 1))
            // Signals are ours: readiness must turn 503 and traffic drain before the server stops.
            .disable_signals()
            .shutdown_timeout(config.shutdown_timeout.as_secs());
        let shutdown = builder.graceful_shutdown_signal();
        let local_addr = listener.local_addr()?;
        builder = builder.listen("skype-gateway", listener, move || {
            let shutdown = shutdown.clone();
            // Called on each worker's thread: the connections are that worker's.
            let connections = connection::Connections::new(held_per_worker, evicted.clone());
            let http = HttpService::build()
                // Also enforced by `Deadlined`, which covers what this does not (see there).
                .keep_alive(deadlines.keep_alive)
                // Off: `Deadlined` bounds every request head, the first one included, and
                // answers a JSON 408 where actix-http's would be bare.
                .client_request_timeout(Duration::ZERO)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(local_addr)
                // Idle keep-alive connections close at once when the server stops.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .on_connect_ext(|io: &Deadlined<_>, data| {
                    data.insert(io.tracker());
                })
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|err: actix_web::Error| err.error_response()),
                    |_| AppConfig::default(),
                ));
            fn_service(move |io: actix_web::rt::net::TcpStream| {
                let connections = Rc::clone(&connections);
                async move {
                    let peer = io.peer_addr().ok();
                    connections.admit().await;
                    let io = Deadlined::new(io, deadlines, connections);
                    Ok::<_, actix_http::error::DispatchError>((io, Protocol::Http1, peer))
                }
            })
            .and_then(http)
        })?;
        let server = builder.run();

        if let Some(demo) = &demo {
            demo.announce(port);
        }
        Ok(Application {
            port,
            listen: config.listen,
            server,
            readiness,
            shutdown_drain: config.shutdown_drain,
            demo,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT: then `/readyz` answers 503 for the drain period while
    /// requests are still served, then in-flight requests finish and the server stops. In
    /// `--demo`, SIGINT (Ctrl-C) skips the drain: it is for a load balancer, which a demo in a
    /// terminal does not have.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // Registered before the port is announced, so no signal can find the default action.
        let signals = ShutdownSignals::register()?;
        let demo = self.demo.is_some();
        self.run_with(async move {
            match signals.received().await {
                Signal::Interrupt if demo => Drain::Skip,
                Signal::Interrupt | Signal::Terminate => Drain::Full,
            }
        })
        .await
    }

    /// Like [`Self::run_until_stopped`], with `shutdown` in place of the process' signals (tests
    /// run many applications in one process, and must not take its signals).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + 'static,
    ) -> std::io::Result<()> {
        self.run_with(async move {
            shutdown.await;
            Drain::Full
        })
        .await
    }

    async fn run_with(
        self,
        shutdown: impl std::future::Future<Output = Drain> + 'static,
    ) -> std::io::Result<()> {
        info!("listening on {} (port {})", self.listen, self.port);
        let handle = self.server.handle();
        let readiness = self.readiness.clone();
        let drain = self.shutdown_drain;
        actix_web::rt::spawn(async move {
            if let Drain::Full = shutdown.await {
                info!("shutdown requested: readiness off, draining for {drain:?}");
                readiness.shutting_down();
                tokio::time::sleep(drain).await;
            } else {
                info!("shutdown requested");
                readiness.shutting_down();
            }
            info!("stopping: waiting for in-flight requests");
            handle.stop(true).await;
        });
        let result = self.server.await;
        if let Some(demo) = self.demo {
            demo.stop().await;
        }
        info!("stopped");
        result
    }
}

/// Binds `listen`; a failure names the setting and the address, since the OS' own message
/// ("Address already in use") says neither.
fn bind(listen: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    listener_on(listen).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        std::io::Error::new(
            e.kind(),
            format!("--listen (SKYPE_GATEWAY_LISTEN) {listen}: {reason}"),
        )
    })
}

/// Connections the kernel completes before the gateway accepts them. std's `bind` asks for 128,
/// which thousands of clients connecting at once (slow clients reconnecting as they are cut)
/// overflow, and each SYN dropped costs its client, a probe as much as an attacker, a second
/// before it tries again. The kernel lowers it to `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

fn listener_on(listen: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std's `bind` does: a restarted gateway binds while its old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// How long a connection that is being closed may take to read the end of its request and to
/// take the answer: actix-web's own default, short because nothing more will be served on it.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a shutdown first keeps serving with readiness off, for `--shutdown-drain`.
enum Drain {
    Full,
    Skip,
}

enum Signal {
    Terminate,
    Interrupt,
}

/// SIGTERM (Kubernetes) and SIGINT (a terminal), registered at once.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn received(mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpStream, time::Duration};

    use super::*;

    /// The kernel's own cap on a listen backlog.
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(4096)
    }

    #[test]
    fn the_listener_takes_a_burst_of_connections_before_any_is_accepted() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        // Over std's 128: a connection beyond the backlog would not complete its handshake.
        let burst = 300.min(somaxconn());
        let connected: Vec<_> = (0..burst)
            .map_while(|_| TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok())
            .collect();
        assert_eq!(connected.len(), burst);
    }
}
