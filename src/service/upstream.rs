//! The seam in front of Graph: the service asks an [`Upstream`] for a report and gets what
//! Graph answered, so its rules can be exercised in-process with a scripted upstream.

use std::future::Future;

use crate::graph::{Fetched, GraphClient, GraphError, ReportCall};

/// Whatever answers report calls as Graph does. Not `Send`: awc's client lives on one worker,
/// and the fetches it serves run on that worker.
pub trait Upstream {
    /// One try of the conditional report call, its redirect and download, by the call's
    /// deadline. Retries are the service's: each one needs Graph's budget.
    fn attempt(&self, call: ReportCall<'_>) -> impl Future<Output = Result<Fetched, GraphError>>;
}

impl Upstream for GraphClient {
    fn attempt(&self, call: ReportCall<'_>) -> impl Future<Output = Result<Fetched, GraphError>> {
        GraphClient::attempt(self, call)
    }
}
