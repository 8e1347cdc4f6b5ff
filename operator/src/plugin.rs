//! The logic behind `kubectl ferry rollout status|history|undo`: reading an App's rollout
//! from its status and ControllerRevisions, and rolling back by putting an old revision's
//! template into `spec.template` (the operator then rolls it out like any change).

use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::{APP_NAME_LABEL, App, CHANGE_CAUSE_ANNOTATION};
use crate::app::conditions::{PROGRESS_DEADLINE_EXCEEDED, PROGRESSING, find};
use crate::app::{controller_uid, stored_template, template_hash};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Rollout(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot print the template: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The App name in `app/web`, `apps/web`, `app.ferry.dev/web`, `apps.ferry.dev/web` or `web`.
pub fn parse_target(target: &str) -> Result<String, PluginError> {
    let name = match target.split_once('/') {
        None => target,
        Some(("app" | "apps" | "app.ferry.dev" | "apps.ferry.dev" | "fapp", name)) => name,
        Some((kind, _)) => {
            return Err(PluginError::Usage(format!(
                "{kind} is not an App; use app/NAME"
            )));
        }
    };
    if name.is_empty() {
        return Err(PluginError::Usage(
            "the App name is empty; use app/NAME".into(),
        ));
    }
    Ok(name.to_owned())
}

/// Where a rollout stands, as `kubectl rollout status` reports a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutState {
    Done(String),
    Waiting(String),
    Failed(String),
}

pub fn rollout_state(app: &App) -> RolloutState {
    let name = app.name_any();
    let status = app.status.clone().unwrap_or_default();
    if status.observed_generation < app.metadata.generation {
        return RolloutState::Waiting(format!(
            "Waiting for app {name:?} spec update to be observed..."
        ));
    }
    if let Some(progressing) = find(&status.conditions, PROGRESSING)
        && progressing.reason == PROGRESS_DEADLINE_EXCEEDED
    {
        return RolloutState::Failed(format!(
            "app {name:?} exceeded its progress deadline: {}",
            progressing.message
        ));
    }
    if app.spec.paused {
        return RolloutState::Waiting(format!(
            "app {name:?} is paused; resume it to continue the rollout..."
        ));
    }
    let desired = app.spec.replicas;
    let waiting = |detail: String| {
        RolloutState::Waiting(format!(
            "Waiting for app {name:?} rollout to finish: {detail}..."
        ))
    };
    if status.updated_replicas < desired {
        return waiting(format!(
            "{} out of {desired} new replicas have been updated",
            status.updated_replicas
        ));
    }
    if status.replicas > status.updated_replicas {
        return waiting(format!(
            "{} old replicas are pending termination",
            status.replicas - status.updated_replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return waiting(format!(
            "{} of {} updated replicas are available",
            status.available_replicas, status.updated_replicas
        ));
    }
    RolloutState::Done(format!("app {name:?} successfully rolled out"))
}

/// `REVISION  CHANGE-CAUSE` lines, oldest first.
pub fn history_table(revisions: &[ControllerRevision]) -> String {
    let mut sorted: Vec<&ControllerRevision> = revisions.iter().collect();
    sorted.sort_by_key(|r| r.revision);
    let rows = sorted.into_iter().map(|revision| {
        let cause = revision
            .annotations()
            .get(CHANGE_CAUSE_ANNOTATION)
            .map_or("<none>", String::as_str);
        format!("{:<9} {cause}", revision.revision)
    });
    std::iter::once("REVISION  CHANGE-CAUSE".to_owned())
        .chain(rows)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The revision `undo` goes back to: `--to-revision`, or the one before the newest.
pub fn rollback_target(
    revisions: &[ControllerRevision],
    to_revision: Option<i64>,
) -> Result<&ControllerRevision, PluginError> {
    match to_revision {
        Some(number) => revisions
            .iter()
            .find(|r| r.revision == number)
            .ok_or_else(|| {
                PluginError::Rollout(format!("revision {number} is not in the history"))
            }),
        None => {
            let mut sorted: Vec<&ControllerRevision> = revisions.iter().collect();
            sorted.sort_by_key(|r| std::cmp::Reverse(r.revision));
            sorted
                .get(1)
                .copied()
                .ok_or_else(|| PluginError::Rollout("no previous revision to roll back to".into()))
        }
    }
}

/// Talks to the cluster for the plugin.
pub struct Rollouts {
    apps: Api<App>,
    revisions: Api<ControllerRevision>,
}

impl Rollouts {
    pub fn new(client: Client, namespace: &str) -> Self {
        Rollouts {
            apps: Api::namespaced(client.clone(), namespace),
            revisions: Api::namespaced(client, namespace),
        }
    }

    /// The App's revisions (those it controls).
    async fn history(&self, app: &App) -> Result<Vec<ControllerRevision>, PluginError> {
        let uid = app.uid();
        let labelled = ListParams::default().labels(APP_NAME_LABEL);
        let revisions = self.revisions.list(&labelled).await?;
        Ok(revisions
            .items
            .into_iter()
            .filter(|r| controller_uid(&r.metadata) == uid.as_deref())
            .collect())
    }

    /// Prints progress until the rollout finishes (or once, without `watch`).
    pub async fn status(
        &self,
        name: &str,
        watch: bool,
        timeout: Option<Duration>,
    ) -> Result<String, PluginError> {
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        loop {
            let app = self.apps.get(name).await?;
            match rollout_state(&app) {
                RolloutState::Done(message) => return Ok(message),
                RolloutState::Failed(message) => return Err(PluginError::Rollout(message)),
                RolloutState::Waiting(message) if !watch => return Ok(message),
                RolloutState::Waiting(message) => {
                    if message != last {
                        println!("{message}");
                        last = message;
                    }
                }
            }
            if timeout.is_some_and(|limit| started.elapsed() >= limit) {
                return Err(PluginError::Rollout(format!(
                    "timed out waiting for app {name:?} to roll out"
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The history table, or one revision's template as YAML.
    pub async fn show_history(
        &self,
        name: &str,
        revision: Option<i64>,
    ) -> Result<String, PluginError> {
        let app = self.apps.get(name).await?;
        let history = self.history(&app).await?;
        match revision {
            None => Ok(history_table(&history)),
            Some(number) => {
                let target = rollback_target(&history, Some(number))?;
                let template = stored_template(target).ok_or_else(|| {
                    PluginError::Rollout(format!("revision {number} holds no pod template"))
                })?;
                Ok(format!(
                    "app {name:?} revision {number}\n{}",
                    serde_yaml::to_string(&template)?
                ))
            }
        }
    }

    /// Puts an old revision's template back into the App.
    pub async fn undo(&self, name: &str, to_revision: Option<i64>) -> Result<String, PluginError> {
        let app = self.apps.get(name).await?;
        if app.spec.paused {
            return Err(PluginError::Rollout(format!(
                "app {name:?} is paused; resume it before rolling back (kubectl patch app/{name} --type merge -p '{{\"spec\":{{\"paused\":false}}}}')"
            )));
        }
        let history = self.history(&app).await?;
        let target = rollback_target(&history, to_revision)?;
        let template = stored_template(target).ok_or_else(|| {
            PluginError::Rollout(format!(
                "revision {} holds no pod template",
                target.revision
            ))
        })?;
        if template_hash(&template) == template_hash(&app.spec.template) {
            return Ok(format!(
                "skipped rollback: app {name:?} already runs the template of revision {}",
                target.revision
            ));
        }
        // Replace, not merge: fields the old template lacks must go.
        let patch = Patch::Json::<()>(
            serde_json::from_value(json!([
                { "op": "replace", "path": "/spec/template", "value": template }
            ]))
            .map_err(|e| PluginError::Rollout(format!("cannot build the patch: {e}")))?,
        );
        self.apps
            .patch(name, &PatchParams::default(), &patch)
            .await?;
        Ok(format!(
            "app.ferry.dev/{name} rolled back to revision {}",
            target.revision
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppStatus;
    use crate::app::conditions::{Truth, Verdict, set};
    use crate::app::testing::{AppBuilder, at, revision};

    fn with_status(status: AppStatus) -> App {
        AppBuilder::new("web")
            .status(AppStatus {
                observed_generation: Some(1),
                ..status
            })
            .build()
    }

    #[test]
    fn targets_name_an_app() {
        assert_eq!(parse_target("app/web").unwrap(), "web");
        assert_eq!(parse_target("apps.ferry.dev/web").unwrap(), "web");
        assert_eq!(parse_target("web").unwrap(), "web");
        assert!(parse_target("deployment/web").is_err());
        assert!(parse_target("app/").is_err());
    }

    #[test]
    fn status_reads_like_kubectl_rollout_status() {
        let counts = |replicas, updated, available| AppStatus {
            replicas,
            updated_replicas: updated,
            ready_replicas: available,
            available_replicas: available,
            ..AppStatus::default()
        };
        let cases = [
            (counts(3, 1, 1), "1 out of 3 new replicas have been updated"),
            (counts(4, 3, 3), "1 old replicas are pending termination"),
            (counts(3, 3, 2), "2 of 3 updated replicas are available"),
        ];
        for (status, fragment) in cases {
            match rollout_state(&with_status(status)) {
                RolloutState::Waiting(message) => assert!(message.contains(fragment), "{message}"),
                other => panic!("expected waiting for {fragment:?}, got {other:?}"),
            }
        }
        assert_eq!(
            rollout_state(&with_status(counts(3, 3, 3))),
            RolloutState::Done("app \"web\" successfully rolled out".into())
        );
    }

    #[test]
    fn a_stuck_rollout_fails_status() {
        let mut status = AppStatus::default();
        let verdict = Verdict {
            status: Truth::False,
            reason: PROGRESS_DEADLINE_EXCEEDED,
            message: "ImagePullBackOff".into(),
        };
        set(&mut status.conditions, PROGRESSING, verdict, at(0), Some(1));
        assert!(
            matches!(rollout_state(&with_status(status)), RolloutState::Failed(m) if m.contains("ImagePullBackOff"))
        );
    }

    #[test]
    fn an_unobserved_spec_is_waited_for() {
        let mut app = with_status(AppStatus::default());
        app.metadata.generation = Some(2);
        assert!(
            matches!(rollout_state(&app), RolloutState::Waiting(m) if m.contains("spec update"))
        );
    }

    #[test]
    fn undo_goes_to_the_previous_or_the_named_revision() {
        let app = AppBuilder::new("web").build();
        let history = [
            revision(&app, "web-a", "a", 1),
            revision(&app, "web-c", "c", 3),
            revision(&app, "web-b", "b", 2),
        ];
        assert_eq!(rollback_target(&history, None).unwrap().revision, 2);
        assert_eq!(rollback_target(&history, Some(1)).unwrap().revision, 1);
        assert!(rollback_target(&history, Some(7)).is_err());
        assert!(rollback_target(&history[..1], None).is_err());
    }

    #[test]
    fn history_lists_revisions_oldest_first() {
        let app = AppBuilder::new("web").build();
        let mut newest = revision(&app, "web-b", "b", 2);
        newest
            .annotations_mut()
            .insert(CHANGE_CAUSE_ANNOTATION.into(), "image web:v2".into());
        let table = history_table(&[newest, revision(&app, "web-a", "a", 1)]);
        assert_eq!(
            table,
            "REVISION  CHANGE-CAUSE\n1         <none>\n2         image web:v2"
        );
    }
}
