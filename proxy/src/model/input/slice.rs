//! EndpointSlice → [`EndpointSliceInfo`].

use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};

use super::parse::{address, bounded, namespaced_name, port_number, protocol};
use super::{Converted, Ignored, InputError, MAX_SLICE_ENDPOINTS, MAX_SLICE_PORTS, Skip};
use crate::model::cluster::{
    Endpoint, EndpointConditions, EndpointSliceInfo, ServiceName, SliceName, SlicePort,
};

/// Names the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub fn endpoint_slice_info(slice: &EndpointSlice) -> Result<Converted<EndpointSliceInfo>, Skip> {
    let (namespace, name) = namespaced_name(&slice.metadata)?;
    let is_ipv4 = match slice.address_type.as_str() {
        "IPv4" => true,
        "IPv6" => false,
        other => return Err(Skip::Ignored(Ignored::AddressType(other.to_owned()))),
    };
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
        .filter(|service| !service.is_empty())
        .ok_or(InputError::MissingServiceLabel)?;
    let ports = bounded("ports", slice.ports.as_ref(), MAX_SLICE_PORTS)?;
    let endpoints = bounded("endpoints", Some(&slice.endpoints), MAX_SLICE_ENDPOINTS)?;

    let mut warnings = Vec::new();
    let ports = ports
        .iter()
        .filter_map(|p| slice_port(p).map_err(|e| warnings.push(e)).ok().flatten())
        .collect();
    let endpoints = endpoints
        .iter()
        .filter_map(|e| endpoint(e, is_ipv4).map_err(|e| warnings.push(e)).ok())
        .collect();
    let value = EndpointSliceInfo {
        name: SliceName {
            namespace: namespace.clone(),
            name,
        },
        service: ServiceName::new(namespace, service.clone()),
        ports,
        endpoints,
    };
    Ok(Converted { value, warnings })
}

/// `None` for a port without a number: it means "all ports", which a proxy cannot serve.
fn slice_port(port: &discovery::EndpointPort) -> Result<Option<SlicePort>, InputError> {
    let Some(number) = port.port else {
        return Ok(None);
    };
    Ok(Some(SlicePort {
        name: port.name.clone().unwrap_or_default(),
        protocol: protocol("ports[].protocol", port.protocol.as_deref())?,
        port: port_number("ports[].port", number)?,
    }))
}

/// Only the first address counts: the API defines no meaning for the others.
fn endpoint(endpoint: &discovery::Endpoint, is_ipv4: bool) -> Result<Endpoint, InputError> {
    const FIELD: &str = "endpoints[].addresses";
    let first = endpoint.addresses.first().map_or("", String::as_str);
    let address = address(FIELD, first)?;
    if address.is_ipv4() != is_ipv4 {
        return Err(InputError::WrongFamily {
            field: FIELD,
            address,
        });
    }
    let conditions = endpoint.conditions.as_ref();
    let condition = |get: fn(&discovery::EndpointConditions) -> Option<bool>, absent| {
        conditions.and_then(get).unwrap_or(absent)
    };
    Ok(Endpoint {
        address,
        conditions: EndpointConditions {
            ready: condition(|c| c.ready, true),
            serving: condition(|c| c.serving, true),
            terminating: condition(|c| c.terminating, false),
        },
        node_name: endpoint.node_name.clone(),
        zone: endpoint.zone.clone(),
    })
}
