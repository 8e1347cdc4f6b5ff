//! Checks the API server's schema cannot express: an App that fails them gets a condition and
//! an Event, and nothing else is touched.

use kube::core::{Selector, SelectorExt};

use super::rollout::{Fenceposts, fenceposts};
use crate::api::{App, StrategyType};

/// What a valid spec resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    pub selector: Selector,
    pub fenceposts: Fenceposts,
}

/// Why a spec cannot be acted on, as a message for the person who wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem(pub String);

pub fn validate(app: &App) -> Result<ValidSpec, SpecProblem> {
    let selector = selector(app)?;
    check_restart_policy(app)?;
    check_service_selector(app)?;
    let fenceposts = match app.spec.strategy.type_ {
        StrategyType::Recreate => Fenceposts::RECREATE,
        StrategyType::RollingUpdate => fenceposts(&app.rolling_update(), app.spec.replicas)
            .map_err(|e| SpecProblem(format!("spec.strategy.rollingUpdate: {e}")))?,
    };
    Ok(ValidSpec {
        selector,
        fenceposts,
    })
}

/// The App's pod selector, if it is usable: the caches are searched with it for orphans.
pub fn pod_selector(app: &App) -> Option<Selector> {
    selector(app).ok()
}

/// The parsed selector; it must select something and must select the template's pods.
fn selector(app: &App) -> Result<Selector, SpecProblem> {
    let selector = Selector::try_from(app.effective_selector())
        .map_err(|e| SpecProblem(format!("spec.selector is invalid: {e}")))?;
    if selector.selects_all() {
        return Err(SpecProblem(
            "spec.selector is empty and would select every pod in the namespace; give it (or the template) labels".into(),
        ));
    }
    if !selector.matches(app.template_labels()) {
        return Err(SpecProblem(format!(
            "spec.selector ({selector}) does not match the template's labels ({}): the App's own pods would not be selected",
            Selector::from_iter(app.template_labels().clone())
        )));
    }
    Ok(selector)
}

/// An App keeps its pods running; a pod that may exit for good would be replaced forever.
fn check_restart_policy(app: &App) -> Result<(), SpecProblem> {
    let policy = app
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    match policy {
        None | Some("Always") => Ok(()),
        Some(other) => Err(SpecProblem(format!(
            "spec.template.spec.restartPolicy is {other}; an App's pods must use Always"
        ))),
    }
}

/// A Service selects by label equality only.
fn check_service_selector(app: &App) -> Result<(), SpecProblem> {
    let has_expressions = app
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .is_some_and(|e| !e.is_empty());
    if app.spec.service.is_some() && has_expressions {
        return Err(SpecProblem(
            "spec.service needs a spec.selector of matchLabels only: a Service selects pods by label equality".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::AppBuilder;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    #[track_caller]
    fn assert_problem(app: App, fragment: &str) {
        match validate(&app) {
            Err(SpecProblem(message)) => assert!(message.contains(fragment), "{message}"),
            Ok(spec) => panic!("expected a problem containing {fragment:?}, got {spec:?}"),
        }
    }

    fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            match_expressions: None,
        }
    }

    #[test]
    fn omitted_selector_defaults_to_template_labels() {
        let spec = validate(&AppBuilder::new("web").build()).unwrap();
        assert_eq!(spec.selector.to_string(), "app=web");
    }

    #[test]
    fn selector_must_match_the_template() {
        let app = AppBuilder::new("web")
            .selector(match_labels(&[("app", "api")]))
            .build();
        assert_problem(app, "does not match the template's labels (app=web)");
    }

    #[test]
    fn empty_selector_is_refused() {
        let app = AppBuilder::new("web").labels(BTreeMap::new()).build();
        assert_problem(app, "spec.selector is empty");
        let app = AppBuilder::new("web")
            .selector(LabelSelector::default())
            .build();
        assert_problem(app, "spec.selector is empty");
    }

    #[test]
    fn restart_policy_must_be_always() {
        let app = AppBuilder::new("web").restart_policy("Never").build();
        assert_problem(app, "restartPolicy is Never");
    }

    #[test]
    fn malformed_percentages_are_refused() {
        let app = AppBuilder::new("web").rolling("ten", "25%").build();
        assert_problem(app, "spec.strategy.rollingUpdate");
    }
}
