//! Black-box tests: the real server on port 0 against the Graph simulator on loopback.

mod admission;
mod app_mode;
mod budget;
mod cache;
mod catalog;
mod compression;
mod connections;
mod contract;
mod cors;
mod errors;
mod hardening;
mod helpers;
mod methods;
mod operations;
mod redis;
mod reports;
mod security;
mod shared;
mod startup;
