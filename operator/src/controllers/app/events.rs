//! Publishing Events on Apps. A failed publish is logged, never fatal: Events are for people,
//! the status is the record.
//!
//! Each publish uses a fresh `Recorder`: the Recorder folds events with the same reason into
//! one series and keeps the first note, so "created 2 pods of revision a" would go on being
//! shown for the pods of revision b. Repeats are avoided where they arise instead.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use super::Context;
use crate::api::App;
use crate::app::{Notice, Severity};

pub async fn publish(ctx: &Context, regarding: &ObjectReference, notice: &Notice) {
    let event = Event {
        type_: match notice.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: notice.reason.to_owned(),
        note: Some(truncate(&notice.message)),
        action: notice.reason.to_owned(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(error) = recorder.publish(&event, regarding).await {
        warn!(%error, reason = notice.reason, "cannot publish event");
    }
}

/// A reference to an App known only by its metadata (it failed to parse).
pub fn reference_to_unreadable(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(App::api_version(&()).into_owned()),
        kind: Some(App::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Event notes are limited to 1kB.
fn truncate(message: &str) -> String {
    const LIMIT: usize = 1000;
    if message.len() <= LIMIT {
        return message.to_owned();
    }
    let mut end = LIMIT;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// "1 pod", "3 pods".
pub fn pod_count(count: usize) -> String {
    if count == 1 {
        "1 pod".to_owned()
    } else {
        format!("{count} pods")
    }
}

/// Names for an Event note: the first few, then how many more.
pub fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.into_iter().collect();
    let shown = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let message = "é".repeat(800);
        let cut = truncate(&message);
        assert!(cut.len() <= 1003 && cut.ends_with('…'));
    }

    #[test]
    fn name_lists_stay_short() {
        let names: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
        let list = name_list(names.iter().map(String::as_str));
        assert_eq!(list, "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 2 more");
    }
}
