//! Field parsers shared by the object conversions.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::InputError;
use crate::model::types::Protocol;

/// `(namespace, name)` of a namespaced object.
pub(super) fn namespaced_name(meta: &ObjectMeta) -> Result<(String, String), InputError> {
    match (&meta.namespace, &meta.name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.clone(), name.clone()))
        }
        _ => Err(InputError::MissingName),
    }
}

/// Rejects lists too long to be anything but a mistake or an attack.
pub(super) fn bounded<'a, T>(
    field: &'static str,
    items: Option<&'a Vec<T>>,
    limit: usize,
) -> Result<&'a [T], InputError> {
    let items = items.map_or(&[][..], Vec::as_slice);
    if items.len() > limit {
        return Err(InputError::TooLarge {
            field,
            count: items.len(),
            limit,
        });
    }
    Ok(items)
}

/// The API's protocol names; absent means TCP.
pub(super) fn protocol(field: &'static str, value: Option<&str>) -> Result<Protocol, InputError> {
    match value.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(InputError::UnsupportedProtocol {
            field,
            protocol: other.to_owned(),
        }),
    }
}

pub(super) fn port_number(field: &'static str, number: i32) -> Result<u16, InputError> {
    u16::try_from(number)
        .ok()
        .filter(|&port| port != 0)
        .ok_or(InputError::PortOutOfRange { field, number })
}

pub(super) fn address(field: &'static str, value: &str) -> Result<IpAddr, InputError> {
    value
        .trim()
        .parse()
        .map_err(|_| InputError::UnparsableAddress {
            field,
            value: value.to_owned(),
        })
}

/// A CIDR, normalised so that `10.0.0.1/8` means `10.0.0.0/8`.
pub(super) fn cidr(field: &'static str, value: &str) -> Result<IpNet, InputError> {
    value
        .trim()
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| InputError::UnparsableCidr {
            field,
            value: value.to_owned(),
        })
}

/// Keeps the values that parse, recording a warning for each one that does not.
pub(super) fn keep_valid<'a, T>(
    values: impl IntoIterator<Item = &'a String>,
    parse: impl Fn(&str) -> Result<T, InputError>,
    warnings: &mut Vec<InputError>,
) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|value| parse(value).map_err(|e| warnings.push(e)).ok())
        .collect()
}
