//! Which accounts of a cluster an event goes to, and with which app id: the accounts whose root group
//! holds the event's app (`appId`, `runSpecId`, `appDefinition.id`, a deployment's
//! `plan.steps[].actions[].app` / `currentStep`), or, for a group event (`groupId`, a deployment
//! without app actions: `plan.target|original.id`), those whose root lies under the group or holds it.
//! An event naming neither (`event_stream_attached`, scheduler events, unknown types) goes to all.

use std::borrow::Cow;

use serde::Deserialize;

use crate::config::AccountConfig;

/// The parts of a payload that say which apps (or groups) an event concerns. Everything else is
/// skipped without being built (a deployment's plan can be hundreds of KB).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Concerns<'a> {
    #[serde(rename = "appId", borrow)]
    app_id: Option<Cow<'a, str>>,
    #[serde(rename = "runSpecId", borrow)]
    run_spec_id: Option<Cow<'a, str>>,
    #[serde(rename = "groupId", borrow)]
    group_id: Option<Cow<'a, str>>,
    #[serde(rename = "appDefinition", borrow)]
    app_definition: Option<IdOnly<'a>>,
    #[serde(borrow)]
    plan: Option<Plan<'a>>,
    #[serde(rename = "currentStep", borrow)]
    current_step: Option<Step<'a>>,
    /// A deployment's id (kept in a truncation marker).
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan<'a> {
    #[serde(borrow)]
    steps: Vec<Step<'a>>,
    #[serde(borrow)]
    original: Option<IdOnly<'a>>,
    #[serde(borrow)]
    target: Option<IdOnly<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Step<'a> {
    #[serde(borrow)]
    actions: Vec<Action<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Action<'a> {
    #[serde(borrow)]
    app: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pod: Option<Cow<'a, str>>,
}

/// One account an event goes to, with the app id for its `Dcos-App-Id` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Index into the cluster's accounts.
    pub account: usize,
    pub app_id: Option<String>,
}

/// What routing found out about an event.
#[derive(Debug, Default)]
pub struct Routing {
    pub deliveries: Vec<Delivery>,
    /// The payload's `id` (a deployment's), for truncation markers.
    pub id: Option<String>,
    /// The payload's `timestamp`, for truncation markers.
    pub timestamp: Option<String>,
}

fn under(path: &str, root: &str) -> bool {
    path == root || path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/')
}

/// Which accounts of the cluster get `data`: those whose root holds one of its apps; for a group
/// event, those whose root lies under the group or holds it; without either, all of them.
pub fn route(accounts: &[AccountConfig], data: &[u8]) -> Routing {
    let concerns: Concerns<'_> = serde_json::from_slice(data).unwrap_or_default();
    let mut apps: Vec<Cow<'_, str>> = Vec::new();
    apps.extend(concerns.app_id.clone());
    apps.extend(concerns.run_spec_id.clone());
    apps.extend(concerns.app_definition.and_then(|d| d.id));
    let mut groups: Vec<Cow<'_, str>> = Vec::new();
    groups.extend(concerns.group_id.clone());
    if let Some(plan) = concerns.plan {
        for step in plan.steps.into_iter().chain(concerns.current_step) {
            for action in step.actions {
                apps.extend(action.app.or(action.pod));
            }
        }
        if apps.is_empty() {
            groups.extend(plan.target.and_then(|t| t.id));
            groups.extend(plan.original.and_then(|o| o.id));
        }
    } else if let Some(step) = concerns.current_step {
        for action in step.actions {
            apps.extend(action.app.or(action.pod));
        }
    }
    let mut deliveries = Vec::new();
    if apps.is_empty() && groups.is_empty() {
        deliveries.extend((0..accounts.len()).map(|account| Delivery {
            account,
            app_id: None,
        }));
    } else {
        for (index, account) in accounts.iter().enumerate() {
            let root = account.root();
            let app = apps.iter().find(|app| under(app, &root));
            let group = groups
                .iter()
                .any(|g| under(g, &root) || under(&root, g.trim_end_matches('/')) || g == "/");
            if app.is_some() || group {
                deliveries.push(Delivery {
                    account: index,
                    app_id: app.map(|a| a.to_string()),
                });
            }
        }
    }
    Routing {
        deliveries,
        id: concerns.id.map(Cow::into_owned),
        timestamp: concerns.timestamp.map(Cow::into_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<AccountConfig> {
        let text = "[[account]]\nname = \"prod\"\nmarathon_urls = [\"http://m\"]\n\
                    [[account]]\nname = \"web\"\nmarathon_urls = [\"http://m\"]\nroot_group = \"/prod/web\"\n\
                    [[account]]\nname = \"dev\"\nmarathon_urls = [\"http://m\"]\n";
        crate::config::Config::from_toml(std::path::Path::new("t.toml"), text, |_| None)
            .unwrap()
            .accounts
    }

    fn names_of(accounts: &[AccountConfig], routing: &Routing) -> Vec<(String, Option<String>)> {
        routing
            .deliveries
            .iter()
            .map(|d| (accounts[d.account].name.clone(), d.app_id.clone()))
            .collect()
    }

    #[test]
    fn routes_by_app_run_spec_and_plan() {
        let a = accounts();
        let r = route(
            &a,
            br#"{"eventType":"status_update_event","appId":"/prod/web/api"}"#,
        );
        assert_eq!(
            names_of(&a, &r),
            vec![
                ("prod".into(), Some("/prod/web/api".into())),
                ("web".into(), Some("/prod/web/api".into()))
            ]
        );
        let r = route(
            &a,
            br#"{"instanceId":"x","runSpecId":"/dev/x","condition":"Running"}"#,
        );
        assert_eq!(
            names_of(&a, &r),
            vec![("dev".into(), Some("/dev/x".into()))]
        );
        let r = route(
            &a,
            br#"{"eventType":"deployment_success","id":"d1","plan":{"id":"d1","original":{"id":"/","apps":[]},"target":{"id":"/"},"steps":[{"actions":[{"action":"ScaleApplication","app":"/dev/a"}]},{"actions":[{"action":"StartApplication","app":"/prod/b"}]}]}}"#,
        );
        assert_eq!(
            names_of(&a, &r),
            vec![
                ("prod".into(), Some("/prod/b".into())),
                ("dev".into(), Some("/dev/a".into()))
            ]
        );
        assert_eq!(r.id.as_deref(), Some("d1"));
    }

    #[test]
    fn events_without_app_go_everywhere_and_foreign_apps_nowhere() {
        let a = accounts();
        let r = route(
            &a,
            br#"{"eventType":"event_stream_attached","remoteAddress":"1.2.3.4"}"#,
        );
        assert_eq!(r.deliveries.len(), 3);
        assert!(r.deliveries.iter().all(|d| d.app_id.is_none()));
        assert_eq!(route(&a, b"not json").deliveries.len(), 3);
        assert!(route(&a, br#"{"appId":"/production/x"}"#)
            .deliveries
            .is_empty());
        let r = route(
            &a,
            br#"{"eventType":"group_change_success","groupId":"/prod"}"#,
        );
        assert_eq!(
            names_of(&a, &r),
            vec![("prod".into(), None), ("web".into(), None)]
        );
        let r = route(&a, br#"{"eventType":"group_change_success","groupId":"/"}"#);
        assert_eq!(r.deliveries.len(), 3);
    }
}
