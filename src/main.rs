use std::process::ExitCode;

use skype_gateway::{config::Config, startup::Application};

fn main() -> ExitCode {
    let code = serve();
    // The access log's last lines, buffered until now: after the server stopped, before exit.
    log::logger().flush();
    code
}

#[actix_web::main]
async fn serve() -> ExitCode {
    let config = Config::load();
    skype_gateway::logging::init(config.access_log_interval);
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    if let Err(message) = config.validate() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("error: {err}");
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
