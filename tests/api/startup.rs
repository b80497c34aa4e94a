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
