pub mod auth;
pub mod report;
pub mod simulator;
