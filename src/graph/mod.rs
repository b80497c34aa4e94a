//! The Graph client: the conditional report call, hand-resolved redirects to an allowlisted
//! download host, the retry policy, and the errors of that boundary.

mod allowlist;
mod client;
mod error;
mod framing;
mod retry;

pub use allowlist::{Allowlist, is_loopback};
pub use client::{Fetched, GraphClient, ReportCall, UpstreamSettings, outbound_client, tls_config};
pub use error::GraphError;
pub use retry::{RetryPolicy, parse_retry_after};
