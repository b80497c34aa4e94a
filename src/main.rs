use std::process::ExitCode;

use clap::Parser;
use skype_gateway::{config::Config, startup::Application};

#[actix_web::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // awc's trace output prints request heads, full pre-authenticated download URLs
        // included; no RUST_LOG may turn it on.
        .filter_module("awc", log::LevelFilter::Debug)
        .init();
    if let Err(message) = config.validate() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
