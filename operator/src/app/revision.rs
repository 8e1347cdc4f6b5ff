//! Revisions: every pod template an App has run is kept as a ControllerRevision named
//! `<app>-<hash>`, numbered in the order it last became the template (a rollback to an old
//! template renumbers it to the newest, as Deployment does with its ReplicaSets).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::Action;
use super::objects::{managed_labels, owner_reference};
use crate::api::{App, CHANGE_CAUSE_ANNOTATION, REVISION_HASH_LABEL};

/// A revision the planner refers to: its object name, template hash and number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub name: String,
    pub hash: String,
    pub number: i64,
}

/// The App's revisions as the planner sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct Revisions {
    /// The revision of the current template.
    pub update: Revision,
    /// The revision the last completed rollout reached, with its template, when it differs
    /// from `update` and still exists.
    pub current: Option<(Revision, PodTemplateSpec)>,
    /// Creates or renumbers the update revision.
    pub actions: Vec<Action>,
    /// Whether the update revision is new to the App (a rollout starts).
    pub update_is_new: bool,
}

/// A stable hash of a pod template: FNV-1a over its canonical JSON (keys sorted), written with
/// consonants and digits only so it never spells a word and is a valid label value.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    encode(fnv1a64(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<_, _> = map.iter().collect();
            out.push('{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

fn encode(mut hash: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = ALPHABET.len() as u64;
    let mut out = String::with_capacity(10);
    for _ in 0..10 {
        out.push(char::from(ALPHABET[(hash % base) as usize]));
        hash /= base;
    }
    out
}

/// The ControllerRevision name for a template hash. Long App names are cut so the name stays
/// a valid object name.
pub fn revision_name(app_name: &str, hash: &str) -> String {
    const MAX_NAME: usize = 253;
    let keep = MAX_NAME - hash.len() - 1;
    let prefix: String = app_name.chars().take(keep).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
}

/// Reads a revision's identity from its object.
pub fn describe(revision: &ControllerRevision) -> Revision {
    Revision {
        name: revision.name_any(),
        hash: revision
            .labels()
            .get(REVISION_HASH_LABEL)
            .cloned()
            .unwrap_or_default(),
        number: revision.revision,
    }
}

/// The pod template a revision stores (`data.spec.template`).
pub fn stored_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    let template = data.0.get("spec")?.get("template")?;
    serde_json::from_value(template.clone()).ok()
}

/// Finds (or plans) the update revision and looks up the current one.
pub fn resolve(app: &App, existing: &[ControllerRevision], update_hash: &str) -> Revisions {
    let newest = existing.iter().map(|r| r.revision).max().unwrap_or(0);
    let found = existing
        .iter()
        .map(describe)
        .find(|r| r.hash == update_hash);
    let (update, actions, update_is_new) = match found {
        Some(revision) if revision.number == newest => (revision, vec![], false),
        Some(revision) => {
            // Rolling back to an older template makes it the newest revision again.
            let renumbered = Revision {
                number: newest + 1,
                ..revision
            };
            let action = Action::RenumberRevision {
                name: renumbered.name.clone(),
                number: renumbered.number,
            };
            (renumbered, vec![action], true)
        }
        None => {
            let revision = Revision {
                name: revision_name(&app.name_any(), update_hash),
                hash: update_hash.to_owned(),
                number: newest + 1,
            };
            let action = Action::CreateRevision(Box::new(new_revision(app, &revision)));
            (revision, vec![action], true)
        }
    };
    let current_name = app
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref());
    let current = existing
        .iter()
        .filter(|r| Some(r.name_any().as_str()) == current_name && r.name_any() != update.name)
        .find_map(|r| stored_template(r).map(|t| (describe(r), t)));
    Revisions {
        update,
        current,
        actions,
        update_is_new,
    }
}

fn new_revision(app: &App, revision: &Revision) -> ControllerRevision {
    let mut labels = managed_labels(app);
    labels.insert(REVISION_HASH_LABEL.to_owned(), revision.hash.clone());
    let annotations = app
        .annotations()
        .get(CHANGE_CAUSE_ANNOTATION)
        .map(|cause| BTreeMap::from([(CHANGE_CAUSE_ANNOTATION.to_owned(), cause.clone())]));
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision.name.clone()),
            namespace: app.namespace(),
            labels: Some(labels),
            annotations,
            owner_references: owner_reference(app).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(
            json!({ "spec": { "template": app.spec.template } }),
        )),
        revision: revision.number,
    }
}

/// Revisions that can go: among the old revisions no pod runs (neither the update nor the
/// current revision), the oldest beyond `revisionHistoryLimit`.
pub fn prunable(
    existing: &[ControllerRevision],
    limit: usize,
    protected: &[&str],
    hashes_in_use: &HashSet<&str>,
) -> Vec<String> {
    let mut cleanable: Vec<Revision> = existing
        .iter()
        .map(describe)
        .filter(|r| {
            !protected.contains(&r.name.as_str()) && !hashes_in_use.contains(r.hash.as_str())
        })
        .collect();
    cleanable.sort_by_key(|r| r.number);
    let excess = cleanable.len().saturating_sub(limit);
    cleanable.into_iter().take(excess).map(|r| r.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{AppBuilder, revision};

    #[test]
    fn hash_is_stable_and_changes_with_the_template() {
        let app = AppBuilder::new("web").image("web:v1").build();
        let same = AppBuilder::new("web").image("web:v1").build();
        let other = AppBuilder::new("web").image("web:v2").build();
        let hash = template_hash(&app.spec.template);
        assert_eq!(hash, template_hash(&same.spec.template));
        assert_ne!(hash, template_hash(&other.spec.template));
        assert_eq!(hash.len(), 10);
        assert!(hash.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn hash_does_not_depend_on_key_order() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"image": "i", "name": "c"}]},
            "metadata": {"labels": {"b": "2", "a": "1"}}
        }))
        .unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
    }

    #[test]
    fn new_template_creates_the_next_revision() {
        let app = AppBuilder::new("web").image("web:v2").build();
        let existing = [revision(&app, "web-old", "old", 3)];
        let resolved = resolve(&app, &existing, "h2");
        assert_eq!(resolved.update.number, 4);
        assert_eq!(resolved.update.name, "web-h2");
        assert!(resolved.update_is_new);
        let [Action::CreateRevision(created)] = resolved.actions.as_slice() else {
            panic!("expected one CreateRevision, got {:?}", resolved.actions);
        };
        assert_eq!(stored_template(created).as_ref(), Some(&app.spec.template));
        assert_eq!(created.labels()[REVISION_HASH_LABEL], "h2");
    }

    #[test]
    fn rollback_renumbers_the_old_revision_to_the_newest() {
        let app = AppBuilder::new("web").build();
        let existing = [
            revision(&app, "web-a", "a", 1),
            revision(&app, "web-b", "b", 2),
        ];
        let resolved = resolve(&app, &existing, "a");
        assert_eq!(
            resolved.actions,
            vec![Action::RenumberRevision {
                name: "web-a".into(),
                number: 3
            }]
        );
        assert!(resolved.update_is_new);
    }

    #[test]
    fn unchanged_template_plans_nothing() {
        let app = AppBuilder::new("web").build();
        let existing = [
            revision(&app, "web-a", "a", 1),
            revision(&app, "web-b", "b", 2),
        ];
        let resolved = resolve(&app, &existing, "b");
        assert!(resolved.actions.is_empty());
        assert!(!resolved.update_is_new);
    }

    #[test]
    fn long_app_names_are_cut_to_a_valid_revision_name() {
        let name = revision_name(&"a".repeat(300), "bcdfghjklm");
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-bcdfghjklm"));
    }

    #[test]
    fn pruning_keeps_the_limit_and_revisions_in_use() {
        let app = AppBuilder::new("web").build();
        let existing: Vec<_> = (1..=6)
            .map(|n| revision(&app, &format!("web-{n}"), &format!("h{n}"), n))
            .collect();
        let in_use = HashSet::from(["h1"]);
        // web-6 is the update and web-5 the current revision, pods still run web-1: of the
        // cleanable web-2..4 the limit keeps the newest two.
        let pruned = prunable(&existing, 2, &["web-6", "web-5"], &in_use);
        assert_eq!(pruned, vec!["web-2"]);
    }
}
