//! `--demo`: the Graph simulator on loopback, and the gateway pointed at it. The simulator is
//! compiled in only with the `demo` feature (on by default); a build without it refuses `--demo`
//! at start-up.

use crate::config::Config;

#[cfg(feature = "demo")]
pub struct Demo(graph_simulator::Simulator);

#[cfg(feature = "demo")]
impl Demo {
    pub async fn start(config: &mut Config) -> std::io::Result<Demo> {
        use crate::graph::Allowlist;
        let sim = graph_simulator::Simulator::start().await?;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        config.graph_base_url = sim
            .graph_base_url()
            .parse()
            .map_err(|e: url::ParseError| invalid(e.to_string()))?;
        config.download_allowlist = Allowlist::parse(&sim.origin()).map_err(invalid)?;
        Ok(Demo(sim))
    }

    pub fn announce(&self, port: u16) {
        log::info!(
            "demo mode: Graph simulator at {}; try: curl -H 'Authorization: Bearer demo-token' http://127.0.0.1:{port}/skype/activity-counts/D7",
            self.0.origin()
        );
    }

    pub async fn stop(self) {
        self.0.stop().await;
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
