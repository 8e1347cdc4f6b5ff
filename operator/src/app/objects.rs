//! The metadata every object the App creates carries: a controller owner reference and the
//! `ferry.dev/app` label.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{APP_NAME_LABEL, App, REVISION_HASH_LABEL};

/// The controller reference that makes the App own an object; deleting the App deletes it,
/// and foreground deletion of the App waits for it.
pub fn owner_reference(app: &App) -> Option<OwnerReference> {
    app.controller_owner_ref(&())
        .map(|reference| OwnerReference {
            block_owner_deletion: Some(true),
            ..reference
        })
}

/// The uid of an object's controller, if it has one.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// `ferry.dev/app: <name>`. Label values are at most 63 characters, App names may be longer:
/// the value is a hint for people and label selectors, ownership is the owner reference.
pub fn managed_labels(app: &App) -> BTreeMap<String, String> {
    let name = app.name_any();
    let value: String = name.chars().take(63).collect();
    let value = value.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    BTreeMap::from([(APP_NAME_LABEL.to_owned(), value.to_owned())])
}

/// The pod the App creates from `template` for revision `hash`; the API server picks the
/// name from `generateName`.
pub fn pod_prototype(app: &App, template: &PodTemplateSpec, hash: &str) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.extend(managed_labels(app));
    labels.insert(REVISION_HASH_LABEL.to_owned(), hash.to_owned());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{hash}-", app.name_any())),
            namespace: app.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: owner_reference(app).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::AppBuilder;

    #[test]
    fn pods_carry_template_labels_revision_and_owner() {
        let app = AppBuilder::new("web").build();
        let pod = pod_prototype(&app, &app.spec.template, "h1");
        let labels = pod.labels();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[REVISION_HASH_LABEL], "h1");
        assert_eq!(labels[APP_NAME_LABEL], "web");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-h1-"));
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("App", Some(true), Some(true))
        );
        assert_eq!(
            controller_uid(&pod.metadata),
            Some(app.uid().unwrap().as_str())
        );
    }

    #[test]
    fn app_name_label_is_cut_to_a_valid_value() {
        let app = AppBuilder::new(&format!("{}-{}", "a".repeat(62), "b".repeat(10))).build();
        assert_eq!(managed_labels(&app)[APP_NAME_LABEL], "a".repeat(62));
    }
}
