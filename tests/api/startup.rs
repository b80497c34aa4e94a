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

#[test]
fn an_unknown_variable_is_warned_about_naming_the_closest_setting() {
    let mut command = gateway_command("info");
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("SKYPE_GATEWAY_FRESH_TTLL", "1m")
        .env("SKYPE_GATEWAY_NOTHING_LIKE_ANY_SETTING", "1");

    let mut gateway = GatewayProcess::spawn(command);

    gateway.wait_until_listening().expect("the gateway starts");
    let log = gateway.stop();
    assert!(
        log.contains(
            "SKYPE_GATEWAY_FRESH_TTLL is not a setting of skype-gateway and is ignored; \
             did you mean SKYPE_GATEWAY_FRESH_TTL (--fresh-ttl)?"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "SKYPE_GATEWAY_NOTHING_LIKE_ANY_SETTING is not a setting of skype-gateway and is ignored\n"
        ),
        "{log}"
    );
    assert_eq!(log.matches("is not a setting").count(), 2, "{log}");
}

#[test]
fn flags_that_demo_overrides_are_warned_about_each_by_name_and_value() {
    let mut command = gateway_command("info");
    command
        .args(["--demo", "--listen", "127.0.0.1:0"])
        .args(["--graph-base-url", "https://graph.example.com/v1.0"])
        .env("SKYPE_GATEWAY_DOWNLOAD_ALLOWLIST", "https://*.example.com")
        // Not overridden: no warning.
        .args(["--fresh-ttl", "1m"]);

    let mut gateway = GatewayProcess::spawn(command);

    gateway.wait_until_listening().expect("the demo starts");
    let log = gateway.stop();
    for line in [
        "--graph-base-url (SKYPE_GATEWAY_GRAPH_BASE_URL) https://graph.example.com/v1.0 is ignored: --demo replaces it with its simulator's",
        "--download-allowlist (SKYPE_GATEWAY_DOWNLOAD_ALLOWLIST) https://*.example.com is ignored: --demo replaces it with its simulator's",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    assert_eq!(log.matches("is ignored: --demo").count(), 2, "{log}");
}

#[test]
fn in_app_mode_demo_warns_about_each_app_setting_it_overrides_without_printing_the_secret() {
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let mut command = gateway_command("info");
    command
        .args(["--demo", "--listen", "127.0.0.1:0", "--graph-auth", "app"])
        .args(["--authority-url", "https://login.example.com"])
        .args(["--client-id", "my-client-id"])
        .env("SKYPE_GATEWAY_CLIENT_SECRET", "hunter2-secret")
        .args(["--caller-audience", "api://gateway"])
        .args(["--tenants", tenant]);

    let mut gateway = GatewayProcess::spawn(command);

    gateway.wait_until_listening().expect("the demo starts");
    let log = gateway.stop();
    for named in [
        "--authority-url (SKYPE_GATEWAY_AUTHORITY_URL) https://login.example.com is ignored",
        "--client-id (SKYPE_GATEWAY_CLIENT_ID) my-client-id is ignored",
        "--client-secret (SKYPE_GATEWAY_CLIENT_SECRET) is ignored",
        "--caller-audience (SKYPE_GATEWAY_CALLER_AUDIENCE) api://gateway is ignored",
        &format!("--tenants (SKYPE_GATEWAY_TENANTS) {tenant} is ignored"),
    ] {
        assert!(log.contains(named), "no {named:?} in:\n{log}");
    }
    assert!(!log.contains("hunter2"), "the secret is printed:\n{log}");
}
