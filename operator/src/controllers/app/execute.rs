//! Performs the planner's actions against the API server, records expectations around pod
//! writes, and tells people what happened through Events. It decides nothing: a failed
//! action is reported and retried by the next reconcile.

use std::time::Instant;

use futures::{StreamExt, future, stream};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use super::events::{name_list, pod_count, publish};
use super::{Context, FIELD_MANAGER};
use crate::api::App;
use crate::app::conditions::{FAILED_CREATE, REPLICA_FAILURE, find};
use crate::app::{Action, CreationOutcome, DeleteReason, Notice, PodRef};
use crate::controllers::Error;

/// Pods created at once at most; batches start at 1 and double, so a template the API
/// server rejects costs one request, not hundreds (ReplicaSet's slow start).
const MAX_CREATE_BATCH: usize = 100;
/// Pod deletions in flight at once.
const DELETE_CONCURRENCY: usize = 50;

/// What executing a plan came to.
#[derive(Debug)]
pub struct Report {
    pub creation: CreationOutcome,
    pub errors: Vec<Error>,
}

struct Executor<'a> {
    ctx: &'a Context,
    app: &'a App,
    app_uid: String,
    namespace: String,
    reference: ObjectReference,
    pods: Api<Pod>,
    revisions: Api<ControllerRevision>,
    services: Api<Service>,
}

pub async fn execute(ctx: &Context, app: &App, actions: Vec<Action>) -> Report {
    let mut report = Report {
        creation: CreationOutcome::NotAttempted,
        errors: vec![],
    };
    let (Some(namespace), Some(app_uid)) = (app.namespace(), app.uid()) else {
        report.errors.push(Error::MissingMetadata(app.name_any()));
        return report;
    };
    let client = ctx.client.clone();
    let executor = Executor {
        ctx,
        app,
        app_uid,
        reference: app.object_ref(&()),
        namespace: namespace.clone(),
        pods: Api::namespaced(client.clone(), &namespace),
        revisions: Api::namespaced(client.clone(), &namespace),
        services: Api::namespaced(client, &namespace),
    };
    for action in actions {
        executor.run(action, &mut report).await;
    }
    report
}

impl Executor<'_> {
    async fn run(&self, action: Action, report: &mut Report) {
        let result = match action {
            Action::CreateRevision(revision) => self.create_revision(&revision).await,
            Action::RenumberRevision { name, number } => {
                self.renumber_revision(&name, number).await
            }
            Action::DeleteRevisions(names) => self.delete_revisions(&names).await,
            Action::AdoptPods(pods) => self.adopt(&pods).await,
            Action::ReleasePods(pods) => self.release(&pods).await,
            Action::CreatePods {
                pod,
                count,
                revision,
            } => {
                report.creation = self.create_pods(&pod, count, &revision).await;
                match &report.creation {
                    CreationOutcome::Failed(message) => Err(Error::PodCreation(message.clone())),
                    _ => Ok(()),
                }
            }
            Action::DeletePods { pods, reason } => self.delete_pods(&pods, reason).await,
            Action::ApplyService(service) => self.apply_service(&service).await,
            Action::DeleteService { name } => self.delete_service(&name).await,
        };
        if let Err(error) = result {
            report.errors.push(error);
        }
    }

    async fn tell(&self, notice: Notice) {
        publish(self.ctx, &self.reference, &notice).await;
    }

    async fn create_revision(&self, revision: &ControllerRevision) -> Result<(), Error> {
        match self
            .revisions
            .create(&PostParams::default(), revision)
            .await
        {
            Ok(_) => Ok(()),
            // The cache had not caught up with an earlier create.
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn renumber_revision(&self, name: &str, number: i64) -> Result<(), Error> {
        let patch = Patch::Merge(json!({ "revision": number }));
        self.revisions
            .patch(name, &PatchParams::default(), &patch)
            .await?;
        Ok(())
    }

    async fn delete_revisions(&self, names: &[String]) -> Result<(), Error> {
        for name in names {
            ignore_not_found(
                self.revisions
                    .delete(name, &DeleteParams::default())
                    .await
                    .map(drop),
            )?;
        }
        debug!(revisions = ?names, "pruned revisions");
        Ok(())
    }

    /// Adoption needs the App as the API server has it now: an App being deleted must not
    /// take pods with it that it never owned.
    async fn adopt(&self, pods: &[PodRef]) -> Result<(), Error> {
        let fresh = Api::<App>::namespaced(self.ctx.client.clone(), &self.namespace)
            .get(&self.app.name_any())
            .await?;
        if fresh.uid() != self.app.uid() || fresh.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(owner) = crate::app::owner_reference(self.app) else {
            return Err(Error::MissingMetadata(self.app.name_any()));
        };
        for pod in pods {
            // The uid makes the patch fail if the pod was replaced by a namesake meanwhile.
            let patch = Patch::Strategic(
                json!({ "metadata": { "ownerReferences": [owner], "uid": pod.uid } }),
            );
            ignore_gone(
                self.pods
                    .patch(&pod.name, &PatchParams::default(), &patch)
                    .await
                    .map(drop),
            )?;
        }
        let names = name_list(pods.iter().map(|p| p.name.as_str()));
        self.tell(Notice::normal(
            "AdoptedPods",
            format!("adopted orphan pods matching the selector: {names}"),
        ))
        .await;
        Ok(())
    }

    async fn release(&self, pods: &[PodRef]) -> Result<(), Error> {
        for pod in pods {
            let patch = Patch::Strategic(json!({
                "metadata": { "ownerReferences": [{ "$patch": "delete", "uid": self.app_uid }], "uid": pod.uid }
            }));
            ignore_gone(
                self.pods
                    .patch(&pod.name, &PatchParams::default(), &patch)
                    .await
                    .map(drop),
            )?;
        }
        let names = name_list(pods.iter().map(|p| p.name.as_str()));
        self.tell(Notice::normal(
            "ReleasedPods",
            format!("released pods that no longer match the selector: {names}"),
        ))
        .await;
        Ok(())
    }

    async fn create_pods(&self, pod: &Pod, count: usize, revision: &str) -> CreationOutcome {
        let expectations = &self.ctx.expectations;
        expectations.expect_creations(&self.app_uid, count, Instant::now());
        let mut created: Vec<String> = vec![];
        let mut attempted = 0;
        let mut batch = 1;
        while attempted < count {
            let size = batch.min(count - attempted);
            attempted += size;
            let params = PostParams::default();
            let results = future::join_all((0..size).map(|_| self.pods.create(&params, pod))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => created.push(pod.name_any()),
                    Err(error) => {
                        expectations.creation_observed(&self.app_uid);
                        failure.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = failure {
                for _ in attempted..count {
                    expectations.creation_observed(&self.app_uid);
                }
                return self
                    .creation_failed(&created, count, revision, &error)
                    .await;
            }
            batch = (batch * 2).min(MAX_CREATE_BATCH);
        }
        info!(count, revision, "created pods");
        let names = name_list(created.iter().map(String::as_str));
        self.tell(Notice::normal(
            "CreatedPods",
            format!(
                "created {} of revision {revision}: {names}",
                pod_count(count)
            ),
        ))
        .await;
        CreationOutcome::Created
    }

    async fn creation_failed(
        &self,
        created: &[String],
        count: usize,
        revision: &str,
        error: &kube::Error,
    ) -> CreationOutcome {
        let message = without_generated_name(api_message(error), error);
        // Retries fail the same way until something changes: the condition already says so.
        let reported = self
            .app
            .status
            .as_ref()
            .and_then(|s| find(&s.conditions, REPLICA_FAILURE));
        let repeated =
            reported.is_some_and(|c| c.reason == FAILED_CREATE && c.message.ends_with(&message));
        if !repeated {
            let note = format!(
                "created {} of {count} pods of revision {revision}, then the API server refused: {message}",
                created.len()
            );
            self.tell(Notice::warning(FAILED_CREATE, note)).await;
        }
        CreationOutcome::Failed(message)
    }

    async fn delete_pods(&self, pods: &[PodRef], reason: DeleteReason) -> Result<(), Error> {
        let expectations = &self.ctx.expectations;
        expectations.expect_deletions(
            &self.app_uid,
            pods.iter().map(|p| p.uid.clone()),
            Instant::now(),
        );
        // Owned values in the futures: buffered futures over borrowed items trip the Send
        // check of the controller's spawned reconcile.
        let results: Vec<(PodRef, Result<(), kube::Error>)> = stream::iter(pods.to_vec())
            .map(|pod| {
                let api = self.pods.clone();
                async move {
                    let result = delete_pod(&api, &pod).await;
                    (pod, result)
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        let mut deleted = vec![];
        for (pod, result) in results {
            match ignore_gone(result) {
                Ok(()) => deleted.push(pod.name),
                Err(error) => {
                    expectations.deletion_observed(&self.app_uid, &pod.uid);
                    first_error.get_or_insert(error);
                }
            }
        }
        let why = match reason {
            DeleteReason::Surplus => "more pods than replicas",
            DeleteReason::Replaced => "replaced by the rollout",
            DeleteReason::Finished => "the pod stopped for good",
        };
        if !deleted.is_empty() {
            info!(count = deleted.len(), why, "deleted pods");
            let names = name_list(deleted.iter().map(String::as_str));
            self.tell(Notice::normal(
                "DeletedPods",
                format!("deleted {} ({why}): {names}", pod_count(deleted.len())),
            ))
            .await;
        }
        if let Some(error) = first_error {
            self.tell(Notice::warning(
                "FailedDelete",
                format!("deleting pods failed: {}", api_message(&error)),
            ))
            .await;
            return Err(error.into());
        }
        Ok(())
    }

    async fn apply_service(&self, service: &Service) -> Result<(), Error> {
        let name = service.name_any();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = self
            .services
            .patch(&name, &params, &Patch::Apply(service))
            .await
        {
            self.tell(Notice::warning(
                "FailedApplyService",
                format!("service {name}: {}", api_message(&error)),
            ))
            .await;
            return Err(error.into());
        }
        self.tell(Notice::normal(
            "AppliedService",
            format!("applied service {name} from spec.service"),
        ))
        .await;
        Ok(())
    }

    async fn delete_service(&self, name: &str) -> Result<(), Error> {
        ignore_not_found(
            self.services
                .delete(name, &DeleteParams::default())
                .await
                .map(drop),
        )?;
        self.tell(Notice::normal(
            "DeletedService",
            format!("deleted service {name}: spec.service was removed"),
        ))
        .await;
        Ok(())
    }
}

/// Deletes exactly this pod: the uid precondition spares a namesake created meanwhile.
async fn delete_pod(api: &Api<Pod>, pod: &PodRef) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(&pod.name, &params).await.map(drop)
}

/// The API server's own words when it has them.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// The API server names the refused pod, whose name is generated anew on every attempt; the
/// status must not change with it, or every retry would be a status update.
fn without_generated_name(message: String, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => match status.details.as_ref().map(|d| d.name.as_str()) {
            Some(name) if !name.is_empty() => {
                message.replace(&format!("Pod \"{name}\" "), "the pod ")
            }
            _ => message,
        },
        _ => message,
    }
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        other => other,
    }
}

/// Not found, or a uid precondition that failed: the pod meant is gone either way.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status))
            if status.is_not_found() || status.is_conflict() || status.code == 422 =>
        {
            Ok(())
        }
        other => other,
    }
}
