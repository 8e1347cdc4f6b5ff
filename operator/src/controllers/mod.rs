//! The operator's controllers: each watches one CRD and the objects it owns, plans with a
//! pure planner and executes the plan. They run only while this replica holds the leader
//! lease.

pub mod app;
pub mod autoscaler;
mod expectations;
pub mod lbpool;

use kube::runtime::reflector::store::WriterDropped;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("{0} lacks a namespace or uid; only stored objects can be reconciled")]
    MissingMetadata(String),

    #[error("the watch caches stopped before they synced")]
    CacheStopped(#[from] WriterDropped),

    #[error("pods could not be created: {0}")]
    PodCreation(String),
}

impl Error {
    /// A short, bounded label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                403 => "api_forbidden",
                404 => "api_not_found",
                409 => "api_conflict",
                422 => "api_invalid",
                429 => "api_throttled",
                500..=599 => "api_server_error",
                _ => "api_other",
            },
            Error::Kube(_) => "api_transport",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::CacheStopped(_) => "cache_stopped",
            Error::PodCreation(_) => "pod_creation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn api_errors_are_labelled_by_code() {
        let conflict = Error::Kube(kube::Error::Api(
            Status::failure("changed", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert_eq!(conflict.metric_label(), "api_conflict");
        assert_eq!(
            Error::PodCreation("quota".into()).metric_label(),
            "pod_creation"
        );
    }
}
