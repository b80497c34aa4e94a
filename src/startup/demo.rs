//! `--demo`: the Graph simulator on loopback, and the gateway pointed at it. The simulator is
//! compiled in only with the `demo` feature (on by default); a build without it refuses `--demo`
//! at start-up.

use crate::config::Config;

#[cfg(feature = "demo")]
pub struct Demo {
    sim: graph_simulator::Simulator,
    /// In app-only mode, the tenants of the simulator's demo app.
    tenants: Option<Vec<String>>,
}

#[cfg(feature = "demo")]
impl Demo {
    pub async fn start(config: &mut Config) -> std::io::Result<Demo> {
        use crate::{config::GraphAuth, graph::Allowlist};
        let sim = graph_simulator::Simulator::start().await?;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        config.graph_base_url = sim
            .graph_base_url()
            .parse()
            .map_err(|e: url::ParseError| invalid(e.to_string()))?;
        config.download_allowlist = Allowlist::parse(&sim.origin()).map_err(invalid)?;
        let mut tenants = None;
        if config.graph_auth == GraphAuth::App {
            // The simulator's Entra ID and an app registered there, in place of the real ones.
            let app = sim.register_demo_app();
            config.authority_url = sim
                .authority_url()
                .parse()
                .map_err(|e: url::ParseError| invalid(e.to_string()))?;
            config.client_id = Some(app.client_id);
            config.client_secret = Some(crate::config::Secret(app.client_secret.into_bytes()));
            config.client_secret_file = None;
            config.client_certificate_file = None;
            config.client_assertion_file = None;
            config.caller_audience = vec![app.audience];
            config.tenants = app.tenants.clone();
            tenants = Some(app.tenants);
        }
        Ok(Demo { sim, tenants })
    }

    pub fn announce(&self, port: u16) {
        let origin = self.sim.origin();
        let report = format!("http://127.0.0.1:{port}/skype/activity-counts/D7");
        match &self.tenants {
            None => log::info!(
                "demo mode: Graph simulator at {origin}; try: curl -H 'Authorization: Bearer demo-token' {report}"
            ),
            Some(tenants) => log::info!(
                "demo mode, app-only: Graph and Entra ID simulated at {origin}, tenants {}; try: \
                 TOKEN=$(curl -s -X POST {origin}/_simulator/caller-tokens -d '{{\"tenant\":\"{}\"}}' | sed -E 's/.*\"accessToken\":\"([^\"]+)\".*/\\1/') && \
                 curl -s -H \"Authorization: Bearer $TOKEN\" {report}",
                tenants.join(", "),
                tenants[0]
            ),
        }
    }

    pub async fn stop(self) {
        self.sim.stop().await;
    }
}

#[cfg(not(feature = "demo"))]
pub enum Demo {}

#[cfg(not(feature = "demo"))]
impl Demo {
    pub async fn start(_config: &mut Config) -> std::io::Result<Demo> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "--demo (SKYPE_GATEWAY_DEMO): this binary was built without the `demo` feature",
        ))
    }

    pub fn announce(&self, _port: u16) {
        match *self {}
    }

    pub async fn stop(self) {
        match self {}
    }
}
