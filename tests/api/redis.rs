//! A real `redis-server` for the shared-cache tests, on a free loopback port, that the tests
//! kill and restart.
//!
//! Without `redis-server` on the PATH these tests are skipped (they say so on stderr), unless
//! `SKYPE_GATEWAY_TEST_REDIS=required`, which CI sets: then a missing server fails them.

use std::{
    io::Write,
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Set to `required` to make a missing `redis-server` a failure rather than a skip.
pub const REQUIRE_VARIABLE: &str = "SKYPE_GATEWAY_TEST_REDIS";

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Its working directory, removed on drop; none for a handle from `connect_only`.
    dir: Option<PathBuf>,
}

impl RedisServer {
    /// A fresh server, or `None` (the test skips) when none is installed and none is required.
    pub fn start() -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let required = std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v == "required");
            assert!(
                !required,
                "{REQUIRE_VARIABLE}=required but redis-server is not installed"
            );
            eprintln!(
                "skipped: redis-server is not installed (set {REQUIRE_VARIABLE}=required to fail instead)"
            );
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("skype-gateway-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = super::helpers::closed_port();
        let mut server = RedisServer {
            child: None,
            port,
            dir: Some(dir),
        };
        server.spawn();
        Some(server)
    }

    /// A handle on the server at `port` for commands only: it neither starts nor stops it.
    pub fn connect_only(port: u16) -> RedisServer {
        RedisServer {
            child: None,
            port,
            dir: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            // DEBUG SLEEP makes a slow Redis; only from loopback.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.as_ref().expect("a server this handle started"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).is_none() {
            assert!(
                Instant::now() < deadline,
                "redis-server answers within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server is gone at once, with everything it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The report entries' keys (`PREFIX` `report:` and a keyed hash).
    pub fn report_keys(&self) -> Vec<String> {
        self.dump()
            .into_iter()
            .map(|(key, _)| String::from_utf8(key).unwrap())
            .filter(|key| key.starts_with("skype-gateway:report:"))
            .collect()
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        match self.command(&["GET", key]) {
            Some(Reply::Bulk(value)) => value,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// Every key and, for each, every byte it holds (a string's value, a sorted set's members).
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let keys = match self.command(&["KEYS", "*"]).expect("redis answers") {
            Reply::Array(keys) => keys,
            other => panic!("KEYS: {other:?}"),
        };
        keys.into_iter()
            .map(|key| {
                let Reply::Bulk(key) = key else {
                    panic!("a key is a string")
                };
                let name = String::from_utf8_lossy(&key).into_owned();
                let kind = match self.command(&["TYPE", &name]) {
                    Some(Reply::Status(kind)) => kind,
                    other => panic!("TYPE: {other:?}"),
                };
                let values = match kind.as_str() {
                    "string" => match self.command(&["GET", &name]) {
                        Some(Reply::Bulk(v)) => vec![v],
                        _ => vec![],
                    },
                    "zset" => match self.command(&["ZRANGE", &name, "0", "-1"]) {
                        Some(Reply::Array(members)) => members
                            .into_iter()
                            .filter_map(|m| match m {
                                Reply::Bulk(m) => Some(m),
                                _ => None,
                            })
                            .collect(),
                        _ => vec![],
                    },
                    other => panic!("unexpected key type {other} for {name}"),
                };
                (key, values)
            })
            .collect()
    }

    /// One command over RESP, or `None` if the server does not answer.
    pub fn command(&self, args: &[&str]) -> Option<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&args)
    }

    /// [`RedisServer::command`] with binary arguments (sealed values).
    pub fn command_bytes(&self, args: &[&[u8]]) -> Option<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend(format!("${}\r\n", arg.len()).into_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).ok()?;
        let mut reader = std::io::BufReader::new(stream);
        read_reply(&mut reader)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A RESP reply; the payloads of errors and integers are only printed in assertion messages.
#[derive(Debug)]
#[allow(dead_code)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

fn read_reply(reader: &mut impl std::io::BufRead) -> Option<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1)?;
    Some(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(rest.parse().ok()?),
        "$" => {
            let len: i64 = rest.parse().ok()?;
            if len < 0 {
                return Some(Reply::Nil);
            }
            let mut data = vec![0; usize::try_from(len).ok()? + 2];
            reader.read_exact(&mut data).ok()?;
            data.truncate(data.len() - 2);
            Reply::Bulk(data)
        }
        "*" => {
            let len: i64 = rest.parse().ok()?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_reply(reader)?);
            }
            Reply::Array(items)
        }
        _ => return None,
    })
}
