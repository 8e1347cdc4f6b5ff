//! Which pods the App manages: its own pods that still match the selector, plus matching
//! orphans it adopts. Own pods that stop matching are released (a person relabelling a pod to
//! take it out of rotation keeps it running); pods of other controllers are never touched.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::objects::controller_uid;
use super::pods::PodRef;

/// The outcome of claiming.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claim<'a> {
    /// Pods the App manages from now on (including the adopted ones).
    pub owned: Vec<&'a Pod>,
    pub adopt: Vec<PodRef>,
    pub release: Vec<PodRef>,
}

/// Claims `pods` (the App's own pods and orphans in its namespace) for the App with `app_uid`.
pub fn claim<'a>(app_uid: &str, selector: &Selector, pods: &'a [Arc<Pod>]) -> Claim<'a> {
    let mut claim = Claim::default();
    for pod in pods.iter().map(AsRef::as_ref) {
        let matches = selector.matches(pod.labels());
        let reference = || PodRef {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
        };
        match controller_uid(&pod.metadata) {
            Some(uid) if uid == app_uid => {
                if matches {
                    claim.owned.push(pod);
                } else {
                    claim.release.push(reference());
                }
            }
            Some(_) => {}
            None => {
                let terminating = pod.metadata.deletion_timestamp.is_some();
                if matches && !terminating {
                    claim.owned.push(pod);
                    claim.adopt.push(reference());
                }
            }
        }
    }
    claim
}

/// The pods the App owns by controller reference, whatever their labels: what an App with an
/// unusable spec still counts in its status.
pub fn owned_only<'a>(app_uid: &str, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    pods.iter()
        .map(AsRef::as_ref)
        .filter(|p| controller_uid(&p.metadata) == Some(app_uid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{AppBuilder, PodBuilder};

    fn names(refs: &[PodRef]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn adopts_matching_orphans_and_releases_relabelled_pods() {
        let app = AppBuilder::new("web").build();
        let uid = app.uid().unwrap();
        let selector = Selector::from_iter([("app", "web")]);
        let pods = vec![
            PodBuilder::new("mine").owned_by(&app).pod(),
            PodBuilder::new("relabelled")
                .owned_by(&app)
                .label("app", "debug")
                .pod(),
            PodBuilder::new("orphan").pod(),
            PodBuilder::new("orphan-leaving").terminating().pod(),
            PodBuilder::new("other-app").label("app", "api").pod(),
            PodBuilder::new("foreign")
                .controlled_by("someone-else")
                .pod(),
        ];
        let claim = claim(&uid, &selector, &pods);
        let owned: Vec<_> = claim.owned.iter().map(|p| p.name_any()).collect();
        assert_eq!(owned, ["mine", "orphan"]);
        assert_eq!(names(&claim.adopt), ["orphan"]);
        assert_eq!(names(&claim.release), ["relabelled"]);
    }
}
