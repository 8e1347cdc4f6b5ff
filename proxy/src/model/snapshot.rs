//! The model's input: Services, and their EndpointSlices indexed by Service.
//!
//! Indexing slices by Service keeps building one Service's frontends independent of the number
//! of Services, so a full model is linear and a partial one touches only what changed.

use std::collections::BTreeMap;

use super::cluster::{EndpointSliceInfo, ServiceInfo, ServiceName, SliceName};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    services: BTreeMap<ServiceName, ServiceInfo>,
    slices: BTreeMap<ServiceName, BTreeMap<SliceName, EndpointSliceInfo>>,
    /// Which Service each slice is filed under, so a slice can be removed by its name alone.
    slice_owners: BTreeMap<SliceName, ServiceName>,
}

impl Snapshot {
    /// Inserts or replaces a Service; returns whether anything changed.
    pub fn upsert_service(&mut self, service: ServiceInfo) -> bool {
        if self.services.get(&service.name) == Some(&service) {
            return false;
        }
        self.services.insert(service.name.clone(), service);
        true
    }

    /// Removes a Service (its slices stay: they may outlive it briefly); returns whether it was there.
    pub fn remove_service(&mut self, name: &ServiceName) -> bool {
        self.services.remove(name).is_some()
    }

    /// Inserts or replaces a slice; returns the Services whose endpoints changed (two when the
    /// slice moved from one Service to another, none when nothing changed).
    pub fn upsert_slice(&mut self, slice: EndpointSliceInfo) -> Vec<ServiceName> {
        let mut affected = Vec::new();
        if let Some(previous) = self.slice_owners.get(&slice.name).cloned() {
            let unchanged = self
                .slices
                .get(&previous)
                .and_then(|slices| slices.get(&slice.name))
                == Some(&slice);
            if unchanged {
                return affected;
            }
            if previous != slice.service {
                affected.extend(self.remove_slice(&slice.name));
            }
        }
        affected.push(slice.service.clone());
        self.slice_owners
            .insert(slice.name.clone(), slice.service.clone());
        self.slices
            .entry(slice.service.clone())
            .or_default()
            .insert(slice.name.clone(), slice);
        affected
    }

    /// Removes a slice; returns the Service it belonged to, if it was there.
    pub fn remove_slice(&mut self, name: &SliceName) -> Option<ServiceName> {
        let service = self.slice_owners.remove(name)?;
        if let Some(slices) = self.slices.get_mut(&service) {
            slices.remove(name);
            if slices.is_empty() {
                self.slices.remove(&service);
            }
        }
        Some(service)
    }

    pub fn service(&self, name: &ServiceName) -> Option<&ServiceInfo> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.values()
    }

    /// The Service a slice is filed under.
    pub fn slice_owner(&self, name: &SliceName) -> Option<&ServiceName> {
        self.slice_owners.get(name)
    }

    /// Every slice's name, whichever Service it is filed under.
    pub fn slice_names(&self) -> impl Iterator<Item = &SliceName> {
        self.slice_owners.keys()
    }

    /// The slices labelled with this Service's name.
    pub fn slices_of(&self, service: &ServiceName) -> impl Iterator<Item = &EndpointSliceInfo> {
        self.slices
            .get(service)
            .into_iter()
            .flat_map(|s| s.values())
    }
}
