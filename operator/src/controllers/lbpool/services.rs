//! Reconciles one Service: writes the addresses the allocation gives it into
//! `status.loadBalancer.ingress` (or clears them), then tells the Service's owner what
//! happened with Events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, ObjectReference, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use super::Context;
use super::notices::{Notice, notices};
use crate::controllers::Error;
use crate::lbpool::{Outcome, ServiceKey};

const CONTROLLER: &str = "lbpool-service";
const ALLOCATED: &str = "IPAllocated";
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(10);

pub async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let key = ServiceKey::of(&service).ok_or_else(|| Error::MissingMetadata(service.name_any()))?;
    let span = info_span!(
        "reconcile",
        controller = CONTROLLER,
        namespace = key.namespace,
        service = key.name
    );
    reconcile_service(&key, &ctx).instrument(span).await
}

pub fn error_policy(service: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(service = service.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(RETRY)
}

async fn reconcile_service(key: &ServiceKey, ctx: &Context) -> Result<Action, Error> {
    ctx.inventory.synced().await;
    let snapshot = ctx.inventory.snapshot();
    let assignments = &snapshot.assignments;
    ctx.published.forget_others(assignments);
    let (Some(outcome), Some(service)) =
        (assignments.services.get(key), snapshot.services.get(key))
    else {
        return Ok(Action::await_change());
    };
    let listed = listed_ingress(service);
    let wanted = ingress(outcome);
    if listed != wanted {
        write_ingress(ctx, key, service, &wanted).await?;
        if !ctx
            .inventory
            .wait_until_seen(key, &wanted, snapshot.change)
            .await
        {
            // Only a watch lagging by seconds gets here: decisions until it catches up may
            // not see this write.
            warn!("the Service cache has not shown the status write yet");
        }
        announce_new_addresses(ctx, service, &listed, outcome).await;
    }
    let current = notices(key, outcome, assignments);
    for notice in ctx.published.fresh(key, current) {
        publish(ctx, service, EventType::Warning, notice).await;
    }
    Ok(Action::await_change())
}

/// What the Service's status lists now.
pub fn listed_ingress(service: &Service) -> Vec<LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

/// What the status should list: each address as a virtual IP the nodes serve themselves.
pub fn ingress(outcome: &Outcome) -> Vec<LoadBalancerIngress> {
    outcome
        .addresses()
        .map(|address| LoadBalancerIngress {
            ip: Some(address.to_string()),
            ip_mode: Some("VIP".into()),
            ..LoadBalancerIngress::default()
        })
        .collect()
}

/// Writes the ingress list, only over the Service version the decision was made from: if
/// the Service changed since, the write fails with a conflict and the next decision sees it.
async fn write_ingress(
    ctx: &Context,
    key: &ServiceKey,
    service: &Service,
    ingress: &[LoadBalancerIngress],
) -> Result<(), Error> {
    let list = if ingress.is_empty() {
        Value::Null
    } else {
        json!(ingress)
    };
    let patch = json!({
        "metadata": { "resourceVersion": service.resource_version() },
        "status": { "loadBalancer": { "ingress": list } },
    });
    Api::<Service>::namespaced(ctx.client.clone(), &key.namespace)
        .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let addresses: Vec<&str> = ingress.iter().filter_map(|i| i.ip.as_deref()).collect();
    info!(?addresses, "status written");
    Ok(())
}

async fn announce_new_addresses(
    ctx: &Context,
    service: &Service,
    listed: &[LoadBalancerIngress],
    outcome: &Outcome,
) {
    let Outcome::Served { addresses, .. } = outcome else {
        return;
    };
    let new: Vec<String> = addresses
        .iter()
        .filter(|a| !listed.iter().any(|i| i.ip == Some(a.address.to_string())))
        .map(|a| format!("{} (pool {})", a.address, a.pool))
        .collect();
    if new.is_empty() {
        return;
    }
    let notice = Notice {
        reason: ALLOCATED,
        note: format!("Assigned {}", new.join(", ")),
        related: None,
    };
    publish(ctx, service, EventType::Normal, notice).await;
}

async fn publish(ctx: &Context, service: &Service, type_: EventType, notice: Notice) {
    let event = Event {
        type_,
        reason: notice.reason.to_owned(),
        note: Some(notice.note),
        action: "Allocate".to_owned(),
        secondary: notice.related.map(|key| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(key.namespace),
            name: Some(key.name),
            ..ObjectReference::default()
        }),
    };
    if let Err(error) = ctx.recorder.publish(&event, &service.object_ref(&())).await {
        // An Event is a courtesy: failing to publish one must not fail the reconcile.
        warn!(%error, reason = event.reason, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbpool::Assigned;

    #[test]
    fn the_status_lists_each_address_as_a_virtual_ip_primary_family_first() {
        let outcome = Outcome::Served {
            addresses: vec![
                Assigned {
                    address: "2001:db8::1".parse().expect("an address"),
                    pool: "v6".into(),
                },
                Assigned {
                    address: "192.0.2.1".parse().expect("an address"),
                    pool: "v4".into(),
                },
            ],
            problem: None,
        };
        let ingress = ingress(&outcome);
        assert_eq!(
            serde_json::to_value(&ingress).expect("JSON"),
            json!([{ "ip": "2001:db8::1", "ipMode": "VIP" }, { "ip": "192.0.2.1", "ipMode": "VIP" }])
        );
        assert!(super::ingress(&Outcome::Released).is_empty());
    }

    #[test]
    fn a_service_without_status_lists_nothing() {
        assert!(listed_ingress(&Service::default()).is_empty());
    }
}
