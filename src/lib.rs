pub mod auth;
pub mod cache;
pub mod compression;
/// The report catalog, a crate of its own so that the Graph simulator shares it.
pub use report_catalog as catalog;
pub mod config;
pub mod connection;
pub mod cors;
pub mod entra;
pub mod error;
pub mod graph;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod routes;
pub mod service;
pub mod shared;
pub mod startup;
pub mod telemetry;
