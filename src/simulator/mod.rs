//! The Graph simulator is being written on its own branch; this placeholder only lets the
//! gateway's start-up code compile until it lands, and refuses `--demo` meanwhile.

#[derive(Clone)]
pub struct Simulator;

impl Simulator {
    pub async fn start() -> std::io::Result<Simulator> {
        Err(std::io::Error::other(
            "the Graph simulator has not landed yet",
        ))
    }

    pub fn origin(&self) -> String {
        String::new()
    }

    pub fn graph_base_url(&self) -> String {
        String::new()
    }

    pub async fn stop(&self) {}
}
