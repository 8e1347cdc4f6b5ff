//! The Service an App's `service` block asks for, and whether the observed one needs it
//! applied. Only the fields the App sets are compared; the API server fills in the rest
//! (cluster IP, node ports, defaults).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::objects::{controller_uid, managed_labels, owner_reference};
use crate::api::{
    App, AppService, AppServicePort, Protocol, ServiceType, SessionAffinity, TrafficPolicy,
};

/// What to do about the App's Service.
#[derive(Clone, Debug, PartialEq)]
pub enum ServicePlan {
    Nothing,
    Apply(Box<Service>),
    Delete,
    /// A Service with the App's name exists and belongs to someone else.
    Conflict,
}

pub fn plan_service(
    app: &App,
    selector: &BTreeMap<String, String>,
    observed: Option<&Service>,
) -> ServicePlan {
    let owned_by_app =
        observed.is_some_and(|s| controller_uid(&s.metadata) == app.uid().as_deref());
    if observed.is_some_and(|s| s.metadata.deletion_timestamp.is_some()) {
        // Going away already; once gone it is created again if the block asks for it.
        return ServicePlan::Nothing;
    }
    match (&app.spec.service, observed) {
        (None, Some(_)) if owned_by_app => ServicePlan::Delete,
        (None, _) => ServicePlan::Nothing,
        (Some(_), Some(_)) if !owned_by_app => ServicePlan::Conflict,
        (Some(block), observed) => {
            let desired = desired_service(app, block, selector);
            if observed.is_some_and(|o| matches(&desired, o)) {
                ServicePlan::Nothing
            } else {
                ServicePlan::Apply(Box::new(desired))
            }
        }
    }
}

fn desired_service(app: &App, block: &AppService, selector: &BTreeMap<String, String>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(app.name_any()),
            namespace: app.namespace(),
            labels: Some(managed_labels(app)),
            owner_references: owner_reference(app).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(service_type(block.type_).to_owned()),
            selector: Some(selector.clone()),
            ports: Some(block.ports.iter().map(service_port).collect()),
            session_affinity: block.session_affinity.map(|a| affinity(a).to_owned()),
            external_traffic_policy: block
                .external_traffic_policy
                .map(|p| traffic_policy(p).to_owned()),
            load_balancer_class: block.load_balancer_class.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn service_port(port: &AppServicePort) -> ServicePort {
    ServicePort {
        name: port.name.clone(),
        port: port.port,
        target_port: Some(
            port.target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port)),
        ),
        protocol: Some(protocol(port.protocol).to_owned()),
        node_port: port.node_port,
        ..ServicePort::default()
    }
}

/// The observed Service already has every field the App sets (defaults count as set).
fn matches(desired: &Service, observed: &Service) -> bool {
    let (Some(want), Some(have)) = (&desired.spec, &observed.spec) else {
        return false;
    };
    let or =
        |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
    let want_type = or(&want.type_, "ClusterIP");
    let external_default = if want_type == "ClusterIP" {
        ""
    } else {
        "Cluster"
    };
    let labels_present = desired
        .labels()
        .iter()
        .all(|(k, v)| observed.labels().get(k) == Some(v));
    labels_present
        && want_type == or(&have.type_, "ClusterIP")
        && want.selector == have.selector
        && or(&want.session_affinity, "None") == or(&have.session_affinity, "None")
        && or(&want.external_traffic_policy, external_default)
            == or(&have.external_traffic_policy, external_default)
        && want.load_balancer_class == have.load_balancer_class
        && ports_match(
            want.ports.as_deref().unwrap_or_default(),
            have.ports.as_deref().unwrap_or_default(),
        )
}

fn ports_match(want: &[ServicePort], have: &[ServicePort]) -> bool {
    want.len() == have.len()
        && want.iter().zip(have).all(|(w, h)| {
            w.name == h.name
                && w.port == h.port
                && w.target_port == h.target_port
                && w.protocol.as_deref().unwrap_or("TCP") == h.protocol.as_deref().unwrap_or("TCP")
                && (w.node_port.is_none() || w.node_port == h.node_port)
        })
}

fn service_type(value: ServiceType) -> &'static str {
    match value {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    }
}

fn affinity(value: SessionAffinity) -> &'static str {
    match value {
        SessionAffinity::None => "None",
        SessionAffinity::ClientIp => "ClientIP",
    }
}

fn traffic_policy(value: TrafficPolicy) -> &'static str {
    match value {
        TrafficPolicy::Cluster => "Cluster",
        TrafficPolicy::Local => "Local",
    }
}

fn protocol(value: Protocol) -> &'static str {
    match value {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{AppBuilder, at};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn web_selector() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), "web".to_owned())])
    }

    fn block(type_: ServiceType) -> AppService {
        AppService {
            type_,
            ports: vec![AppServicePort {
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..AppServicePort::default()
            }],
            ..AppService::default()
        }
    }

    /// The Service as the API server returns it: defaults and allocations filled in.
    fn as_stored(mut service: Service) -> Service {
        let spec = service.spec.get_or_insert_default();
        spec.cluster_ip = Some("10.96.0.10".into());
        spec.session_affinity = Some("None".into());
        if spec.type_.as_deref() != Some("ClusterIP") {
            spec.external_traffic_policy = Some("Cluster".into());
            for port in spec.ports.iter_mut().flatten() {
                port.node_port = Some(30080);
            }
        }
        service
    }

    fn applied(plan: ServicePlan) -> Service {
        match plan {
            ServicePlan::Apply(service) => *service,
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    #[test]
    fn service_block_makes_an_owned_service_selecting_the_app() {
        let app = AppBuilder::new("web")
            .service(block(ServiceType::NodePort))
            .build();
        let service = applied(plan_service(&app, &web_selector(), None));
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("web"));
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.selector, Some(web_selector()));
        assert_eq!(service.owner_references()[0].uid, app.uid().unwrap());

        let stored = as_stored(service);
        assert_eq!(
            plan_service(&app, &web_selector(), Some(&stored)),
            ServicePlan::Nothing
        );
    }

    #[test]
    fn changed_block_is_applied_again() {
        let app = AppBuilder::new("web")
            .service(block(ServiceType::ClusterIP))
            .build();
        let stored = as_stored(applied(plan_service(&app, &web_selector(), None)));
        let mut changed = block(ServiceType::ClusterIP);
        changed.ports[0].port = 81;
        let app = AppBuilder::new("web").service(changed).build();
        assert!(matches!(
            plan_service(&app, &web_selector(), Some(&stored)),
            ServicePlan::Apply(_)
        ));
    }

    #[test]
    fn removed_block_deletes_only_an_owned_service() {
        let with_block = AppBuilder::new("web")
            .service(block(ServiceType::ClusterIP))
            .build();
        let ours = as_stored(applied(plan_service(&with_block, &web_selector(), None)));
        let without = AppBuilder::new("web").build();
        assert_eq!(
            plan_service(&without, &web_selector(), Some(&ours)),
            ServicePlan::Delete
        );

        let mut leaving = ours.clone();
        leaving.metadata.deletion_timestamp = Some(Time(at(1)));
        assert_eq!(
            plan_service(&without, &web_selector(), Some(&leaving)),
            ServicePlan::Nothing
        );

        let mut foreign = ours;
        foreign.metadata.owner_references = None;
        assert_eq!(
            plan_service(&without, &web_selector(), Some(&foreign)),
            ServicePlan::Nothing
        );
        assert_eq!(
            plan_service(&with_block, &web_selector(), Some(&foreign)),
            ServicePlan::Conflict
        );
    }
}
