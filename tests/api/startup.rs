//! Start-up of the real binary: what it listens on, and how a failure to start reads.

use std::time::Duration;

use crate::helpers::{GatewayProcess, gateway_command};

#[test]
fn a_busy_listen_address_is_refused_naming_the_flag_the_variable_and_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let mut command = gateway_command("info");
    command.args(["--listen", &address.to_string()]);

    let mut gateway = GatewayProcess::spawn(command);

    assert_eq!(gateway.wait_until_listening(), None);
    let (status, log) = gateway.wait(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let line = format!("error: --listen (SKYPE_GATEWAY_LISTEN) {address}: address already in use");
    assert!(
        log.lines().any(|l| l == line),
        "no line {line:?} in:\n{log}"
    );
}

/// Port 8080 may be taken on the machine running the tests: then the binary must fail to start
/// naming 127.0.0.1:8080, which shows the address it chose just as well.
#[test]
fn demo_without_listen_listens_on_loopback_8080() {
    let mut command = gateway_command("info");
    command.arg("--demo");

    let mut gateway = GatewayProcess::spawn(command);

    match gateway.wait_until_listening() {
        Some(port) => {
            let log = gateway.stop();
            assert_eq!(port, 8080, "{log}");
            assert!(
                log.contains("listening on 127.0.0.1:8080 (port 8080)"),
                "{log}"
            );
        }
        None => {
            let (_, log) = gateway.wait(Duration::from_secs(10));
            assert!(
                log.contains(
                    "error: --listen (SKYPE_GATEWAY_LISTEN) 127.0.0.1:8080: address already in use"
                ),
                "neither listening on nor refused 127.0.0.1:8080:\n{log}"
            );
        }
    }
}

#[test]
fn demo_keeps_a_listen_address_given_by_its_variable() {
    let mut command = gateway_command("info");
    command
        .arg("--demo")
        .env("SKYPE_GATEWAY_LISTEN", "127.0.0.1:0");

    let mut gateway = GatewayProcess::spawn(command);

    let port = gateway.wait_until_listening();
    let log = gateway.stop();
    assert!(port.is_some_and(|p| p != 8080), "{log}");
    assert!(log.contains("listening on 127.0.0.1:0 (port "), "{log}");
}

#[test]
fn demo_stops_at_once_on_sigint_without_the_drain() {
    let mut command = gateway_command("info");
    // The default drain, 5 s, which SIGTERM would wait through.
    command.args(["--demo", "--listen", "127.0.0.1:0"]);
    let mut gateway = GatewayProcess::spawn(command);
    gateway.wait_until_listening().expect("the gateway listens");

    let started = std::time::Instant::now();
    gateway.signal("INT");
    let (status, log) = gateway.wait(Duration::from_secs(4));

    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(2), "{log}");
    assert!(!log.contains("draining"), "{log}");
}

#[test]
fn redis_without_a_long_enough_shared_secret_is_refused_in_one_line() {
    for secret in [None, Some("31 bytes, one short of the 32!!")] {
        let mut command = gateway_command("info");
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            "redis://127.0.0.1:6379/0",
        ]);
        if let Some(secret) = secret {
            command.env("SKYPE_GATEWAY_SHARED_SECRET", secret);
        }
        let mut gateway = GatewayProcess::spawn(command);
        assert_eq!(gateway.wait_until_listening(), None);
        let (status, log) = gateway.wait(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
        let got = secret.map_or(0, str::len);
        let line = format!(
            "error: --redis-url (SKYPE_GATEWAY_REDIS_URL) needs --shared-secret \
             (SKYPE_GATEWAY_SHARED_SECRET) or --shared-secret-file of at least 32 bytes; got {got}"
        );
        assert_eq!(log.trim_end(), line, "one line, naming the flags");
        if let Some(secret) = secret {
            assert!(!log.contains(secret), "the secret is not printed");
        }
    }
}

#[test]
fn a_bad_redis_url_is_refused_without_repeating_its_password() {
    for (flag, variable) in [(true, false), (false, true)] {
        let url = "http://user:hunter2@redis.example:6379/0";
        let mut command = gateway_command("info");
        command.args(["--listen", "127.0.0.1:0"]);
        if flag {
            command.args(["--redis-url", url]);
        }
        if variable {
            command.env("SKYPE_GATEWAY_REDIS_URL", url);
        }
        let mut gateway = GatewayProcess::spawn(command);
        assert_eq!(gateway.wait_until_listening(), None);
        let (status, log) = gateway.wait(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
        assert!(
            log.contains("--redis-url (SKYPE_GATEWAY_REDIS_URL)"),
            "{log}"
        );
        assert!(!log.contains("hunter2"), "the password is printed: {log}");
    }
}
