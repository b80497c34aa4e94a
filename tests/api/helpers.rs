use std::time::Duration;

use awc::http::StatusCode;
use graph_simulator::{Period, Simulator, test_token};
use serde_json::{Value, json};
use skype_gateway::{config::Config, startup::Application};

pub struct TestApp {
    pub address: String,
    pub sim: Simulator,
    pub http: awc::Client,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The identity body, whatever the answer's `Content-Encoding` (`gzip`, `br` or none).
    pub fn decoded(&self) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::new();
        match self.header("content-encoding") {
            None => out.clone_from(&self.body),
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Some("br") => brotli::BrotliDecompress(&mut &self.body[..], &mut out).unwrap(),
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn cache_status(&self) -> &str {
        self.header("x-cache-status").unwrap_or("-")
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A gateway with test-friendly settings, pointed at a fresh simulator.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let sim = Simulator::start().await.expect("simulator starts");
    spawn_app_against(sim, adjust).await
}

pub async fn spawn_app_against(sim: Simulator, adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logging();
    let mut config = test_config(&sim);
    adjust(&mut config);
    config.validate().expect("test config is valid");
    let app = Application::build(config).await.expect("gateway starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        sim,
        http: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .disable_redirects()
            .finish(),
    }
}

/// The gateway's logger, once per test binary: into the test output with `TEST_LOG` set,
/// discarded otherwise (the log macros still run, formatting included).
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let visible = std::env::var_os("TEST_LOG").is_some();
        let access: Box<dyn std::io::Write + Send> = if visible {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::sink())
        };
        skype_gateway::logging::init_with(
            |builder| {
                if visible {
                    builder.is_test(true);
                } else {
                    builder.target(env_logger::Target::Pipe(Box::new(std::io::sink())));
                }
            },
            access,
            Duration::from_millis(50),
        )
        .expect("no other logger is installed");
    });
}

pub fn test_config(sim: &Simulator) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.graph_base_url = sim.graph_base_url().parse().unwrap();
    config.download_allowlist = skype_gateway::graph::Allowlist::parse(&sim.origin()).unwrap();
    config.workers = Some(1.try_into().unwrap());
    config.upstream_timeout = Duration::from_secs(5);
    config.max_retry_wait = Duration::from_secs(2);
    config
}

/// A JWT-shaped token of `tenant`, valid for an hour.
pub fn token_of(tenant: &str) -> String {
    token_expiring_in(tenant, 3600).0
}

/// A JWT-shaped token of `tenant` issued to the client application `app` (its `appid`, as in
/// v1 tokens), valid for an hour: tokens of one app share Graph's budget.
pub fn app_token(tenant: &str, app: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = serde_json::json!({
        "tid": tenant,
        "appid": app,
        "exp": skype_gateway::cache::unix_now() + 3600,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
    });
    format!(
        "{}.{}.{}",
        b64.encode(r#"{"typ":"JWT","alg":"RS256"}"#),
        b64.encode(payload.to_string()),
        b64.encode(b"test-signature"),
    )
}

/// A JWT-shaped token of `tenant` whose `exp` is `seconds` from now (so, with `exp`'s
/// whole-second resolution, it lives `seconds` to `seconds + 1`), and that `exp`.
pub fn token_expiring_in(tenant: &str, seconds: u64) -> (String, u64) {
    let exp = skype_gateway::cache::unix_now() + seconds;
    (test_token(tenant, Some(exp)), exp)
}

/// The body the gateway should answer for `token` and `period`, built here from the CSV the
/// simulator serves, without the gateway's parser: columns by header name, the BOM and blank
/// lines dropped, rows in the file's order, an empty count `null`.
pub fn expected_report(sim: &Simulator, token: &str, period: Period) -> Value {
    let csv = String::from_utf8(sim.report_csv(token, period)).unwrap();
    let mut lines = csv
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|line| !line.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Value> = lines
        .map(|line| {
            let cells: std::collections::HashMap<&str, &str> =
                header.iter().copied().zip(line.split(',')).collect();
            let count = |column: &str| match cells[column] {
                "" => Value::Null,
                n => json!(n.parse::<u64>().unwrap()),
            };
            json!({
                "reportRefreshDate": cells["Report Refresh Date"],
                "reportDate": cells["Report Date"],
                "reportPeriod": cells["Report Period"],
                "peerToPeer": count("Peer-to-peer"),
                "organized": count("Organized"),
                "participated": count("Participated"),
            })
        })
        .collect();
    json!({
        "period": period.as_str(),
        "reportRefreshDate": rows[0]["reportRefreshDate"],
        "value": rows,
    })
}

impl TestApp {
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(awc::http::Method::GET, path, headers).await
    }

    pub async fn request(
        &self,
        method: awc::http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = request.send().await.expect("gateway answers");
        let body = response.body().limit(64 << 20).await.expect("body reads");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: body.to_vec(),
        }
    }

    /// `GET /skype/activity-counts/{period}` with `Authorization: Bearer <token>`.
    pub async fn report(&self, period: &str, token: &str) -> Answer {
        self.get(
            &format!("/skype/activity-counts/{period}"),
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await
    }

    pub async fn report_with(&self, period: &str, token: &str, extra: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        self.get(&format!("/skype/activity-counts/{period}"), &headers)
            .await
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.get("/metrics", &[]).await.body).unwrap()
    }
}

/// The value of one sample in a Prometheus text exposition, e.g.
/// `metric_value(text, "skype_gateway_cache_lookups_total{result=\"hit\"}")`.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {series}"))
        .trim()
        .parse()
        .unwrap()
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The built gateway binary, its log in plain text at `rust_log`, with none of this
/// environment's `SKYPE_GATEWAY_*` settings.
pub fn gateway_command(rust_log: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skype-gateway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SKYPE_GATEWAY_") {
            command.env_remove(name);
        }
    }
    command
        .env("RUST_LOG", rust_log)
        .env("RUST_LOG_STYLE", "never");
    command
}

/// The gateway binary as a child process, its log captured.
pub struct GatewayProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT` once [`GatewayProcess::wait_until_listening`] has seen the port.
    pub address: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    port: std::sync::mpsc::Receiver<u16>,
}

impl GatewayProcess {
    /// Starts the built binary against `sim` with `args` added, and waits until it listens.
    pub fn start(sim: &Simulator, args: &[&str], rust_log: &str) -> GatewayProcess {
        let mut command = gateway_command(rust_log);
        command
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .args(["--graph-base-url", &sim.graph_base_url()])
            .args(["--download-allowlist", &sim.origin()])
            .args(args);
        let mut gateway = GatewayProcess::spawn(command);
        gateway
            .wait_until_listening()
            .expect("the gateway logs its port");
        gateway
    }

    /// Starts `command` (see [`gateway_command`]) and captures its stderr.
    pub fn spawn(mut command: std::process::Command) -> GatewayProcess {
        use std::io::BufRead;
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (port_tx, port) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split_once("(port ")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .and_then(|(port, _)| port.parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        GatewayProcess {
            child,
            address: String::new(),
            log,
            reader: Some(reader),
            port,
        }
    }

    /// The port the gateway logs once it listens; `None` when it exits first (or takes 30 s).
    pub fn wait_until_listening(&mut self) -> Option<u16> {
        let port = self.port.recv_timeout(Duration::from_secs(30)).ok()?;
        self.address = format!("http://127.0.0.1:{port}");
        Some(port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (killing it after `limit`), returns its status and log.
    pub fn wait(mut self, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }

    /// Ends the process and returns its log.
    pub fn stop(self) -> String {
        self.signal("KILL");
        self.wait(Duration::from_secs(10)).1
    }
}

/// A test that fails half-way must not leave its gateway running.
impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
