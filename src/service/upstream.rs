//! The seam in front of Graph: the service asks an [`Upstream`] for a report and gets what
//! Graph answered, so its rules can be exercised in-process with a scripted upstream.

use std::future::Future;

use crate::graph::{Fetched, GraphClient, GraphError, ReportCall};

/// Whatever answers report calls as Graph does. Not `Send`: awc's client lives on one worker,
/// and the fetches it serves run on that worker.
pub trait Upstream {
    /// The conditional report call, its redirect and download, with retries and deadline.
    fn fetch(&self, call: ReportCall<'_>) -> impl Future<Output = Result<Fetched, GraphError>>;
}

impl Upstream for GraphClient {
    fn fetch(&self, call: ReportCall<'_>) -> impl Future<Output = Result<Fetched, GraphError>> {
        GraphClient::fetch(self, call)
    }
}
