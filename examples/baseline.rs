//! The benchmark's baseline: the least an actix-web server can do to answer the gateway's hit
//! path. Same route, same body bytes, the same response headers (names and value sizes), the
//! same worker count, and nothing else: no token, no cache, no metrics, no log.
//!
//! Usage: `baseline --body FILE [--workers N]`; it listens on `127.0.0.1:0`, prints
//! `baseline listening on port N`, and serves until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use actix_web::{
    App, HttpResponse, HttpServer,
    http::header::{AGE, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderName, HeaderValue, VARY},
    web,
};
use bytes::Bytes;

static X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Static header values: no per-request copy or validation, the cheapest actix can do.
async fn report(body: web::Data<Bytes>) -> HttpResponse {
    let value = HeaderValue::from_static;
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, value("application/json")))
        .insert_header((ETAG, value("\"0123456789abcdef0123456789abcdef\"")))
        .insert_header((CACHE_CONTROL, value("private, max-age=899")))
        .insert_header((AGE, value("1")))
        .insert_header((VARY, value("Accept-Encoding, Authorization")))
        .insert_header((X_CACHE_STATUS.clone(), value("HIT")))
        .insert_header((
            X_REQUEST_ID.clone(),
            value("0b7e6bd2-58a1-4c0e-9a55-2f4f3e1c9d10"),
        ))
        .body(body.get_ref().clone())
}

fn main() -> ExitCode {
    let mut body_path = None;
    let mut workers = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--body", Some(path)) => body_path = Some(path),
            ("--workers", Some(n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                workers = n.parse().unwrap_or(1)
            }
            _ => body_path = None,
        }
    }
    let Some(body_path) = body_path else {
        eprintln!("usage: baseline --body FILE [--workers N]");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(&body_path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(err) => {
            eprintln!("error: cannot read {body_path}: {err}");
            return ExitCode::FAILURE;
        }
    };
    match serve(body, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[actix_web::main]
async fn serve(body: Bytes, workers: usize) -> std::io::Result<()> {
    let body = web::Data::new(body);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(body.clone())
            .route("/skype/activity-counts/{period}", web::get().to(report))
    })
    .workers(workers)
    .bind(("127.0.0.1", 0))?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    println!("baseline listening on port {port}");
    server.run().await
}
