//! Black-box tests: the real server on port 0 against the Graph simulator on loopback.

mod cache;
mod connections;
mod contract;
mod errors;
mod helpers;
mod operations;
mod reports;
mod security;
