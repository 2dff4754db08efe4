//! Spinnaker server-group naming on Marathon: `<group>/<application>-<stack>-<detail>-v<NNN>`.
//!
//! The *cluster* is `application[-stack[-detail]]` (no stack but a detail gives `application--detail`,
//! as Spinnaker's Frigga writes it); each part matches `[a-z0-9]+(-+[a-z0-9]+)*`, so the whole is a
//! valid Marathon id segment. A new server group of a cluster takes the next sequence: the highest
//! existing one in the same group + 1, modulo 1000, skipping numbers already taken.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

static PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(-+[a-z0-9]+)*$").expect("static regex"));
static VERSIONED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?P<cluster>.+)-v(?P<seq>[0-9]{3})$").expect("static regex"));

/// Sequences run from `v000` to `v999`.
pub const SEQUENCES: u16 = 1000;

/// Why a name could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// `application`, `stack` or `freeFormDetails` does not fit the rule.
    #[error("{field}: `{value}` must match [a-z0-9]+(-+[a-z0-9]+)* (lower-case letters and digits, dashes inside)")]
    InvalidPart { field: &'static str, value: String },
    /// Every sequence of the cluster in that group is taken.
    #[error("cluster `{cluster}` already has all {SEQUENCES} versions v000..v999 in this group")]
    Exhausted { cluster: String },
}

/// `application[-stack[-detail]]`, checking each part.
pub fn cluster_name(
    application: &str,
    stack: Option<&str>,
    detail: Option<&str>,
) -> Result<String, NamingError> {
    let check = |field: &'static str, value: &str| {
        if PART.is_match(value) {
            Ok(())
        } else {
            Err(NamingError::InvalidPart {
                field,
                value: value.to_string(),
            })
        }
    };
    check("application", application)?;
    let stack = stack.filter(|s| !s.is_empty());
    let detail = detail.filter(|d| !d.is_empty());
    if let Some(stack) = stack {
        check("stack", stack)?;
    }
    if let Some(detail) = detail {
        check("freeFormDetails", detail)?;
    }
    Ok(match (stack, detail) {
        (None, None) => application.to_string(),
        (Some(stack), None) => format!("{application}-{stack}"),
        (stack, Some(detail)) => format!("{application}-{}-{detail}", stack.unwrap_or("")),
    })
}

/// `cluster-vNNN`.
pub fn server_group_name(cluster: &str, sequence: u16) -> String {
    format!("{cluster}-v{:03}", sequence % SEQUENCES)
}

/// Splits `api-main-v003` into (`api-main`, 3); a name without `-vNNN` is its own cluster.
pub fn split_sequence(name: &str) -> (&str, Option<u16>) {
    match VERSIONED.captures(name) {
        Some(c) => {
            let cluster = c.name("cluster").expect("group exists").as_str();
            let seq = c["seq"].parse().ok();
            (cluster, seq)
        }
        None => (name, None),
    }
}

/// The last segment of an app id (`/prod/web/api-v001` → `api-v001`).
pub fn last_segment(app_id: &str) -> &str {
    app_id.rsplit('/').next().unwrap_or(app_id)
}

/// The group of an app id (`/prod/web/api-v001` → `/prod/web`).
pub fn parent_group(app_id: &str) -> &str {
    match app_id.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &app_id[..i],
    }
}

/// The next sequence of `cluster` given the names (last id segments) already in its group: the
/// highest taken + 1, modulo 1000, skipping taken numbers; 0 for a new cluster.
pub fn next_sequence<'a>(
    cluster: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<u16, NamingError> {
    let taken: BTreeSet<u16> = existing
        .into_iter()
        .filter_map(|name| match split_sequence(name) {
            (c, Some(seq)) if c == cluster => Some(seq),
            _ => None,
        })
        .collect();
    let Some(&highest) = taken.last() else {
        return Ok(0);
    };
    (1..=SEQUENCES)
        .map(|step| (highest + step) % SEQUENCES)
        .find(|candidate| !taken.contains(candidate))
        .ok_or_else(|| NamingError::Exhausted {
            cluster: cluster.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_with_optional_parts() {
        assert_eq!(cluster_name("api", None, None).unwrap(), "api");
        assert_eq!(cluster_name("api", Some("main"), None).unwrap(), "api-main");
        assert_eq!(
            cluster_name("api", Some("main"), Some("canary-1")).unwrap(),
            "api-main-canary-1"
        );
        assert_eq!(cluster_name("api", None, Some("x")).unwrap(), "api--x");
        assert_eq!(cluster_name("api", Some(""), Some("")).unwrap(), "api");
        assert_eq!(cluster_name("my-app", Some("s"), None).unwrap(), "my-app-s");
    }

    #[test]
    fn invalid_parts_name_their_field() {
        for (app, stack, detail, field) in [
            ("Api", None, None, "application"),
            ("", None, None, "application"),
            ("api-", None, None, "application"),
            ("api", Some("a_b"), None, "stack"),
            ("api", Some("s"), Some("x.y"), "freeFormDetails"),
            ("api", None, Some("-x"), "freeFormDetails"),
        ] {
            match cluster_name(app, stack, detail) {
                Err(NamingError::InvalidPart { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{app} {stack:?} {detail:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_and_splitting() {
        assert_eq!(server_group_name("api-main", 3), "api-main-v003");
        assert_eq!(server_group_name("api", 999), "api-v999");
        assert_eq!(split_sequence("api-main-v003"), ("api-main", Some(3)));
        assert_eq!(split_sequence("api--x-v120"), ("api--x", Some(120)));
        assert_eq!(split_sequence("api-main"), ("api-main", None));
        assert_eq!(split_sequence("api-v1"), ("api-v1", None));
        assert_eq!(last_segment("/prod/web/api-v001"), "api-v001");
        assert_eq!(parent_group("/prod/web/api-v001"), "/prod/web");
        assert_eq!(parent_group("/api"), "/");
    }

    #[test]
    fn first_version_is_zero() {
        assert_eq!(next_sequence("api", []).unwrap(), 0);
        assert_eq!(
            next_sequence("api", ["other-v005", "api-main-v002"]).unwrap(),
            0
        );
    }

    #[test]
    fn next_is_highest_plus_one() {
        assert_eq!(next_sequence("api", ["api-v000"]).unwrap(), 1);
        assert_eq!(
            next_sequence("api", ["api-v000", "api-v007", "api-v003"]).unwrap(),
            8
        );
        // Other clusters in the group do not count, even with a common prefix.
        assert_eq!(
            next_sequence("api", ["api-v001", "api-main-v050", "apix-v100"]).unwrap(),
            2
        );
        // Gaps below the highest stay gaps.
        assert_eq!(next_sequence("api", ["api-v010"]).unwrap(), 11);
    }

    #[test]
    fn wraps_and_skips_taken() {
        assert_eq!(next_sequence("api", ["api-v999"]).unwrap(), 0);
        assert_eq!(
            next_sequence("api", ["api-v999", "api-v000", "api-v001"]).unwrap(),
            2
        );
        assert_eq!(
            next_sequence("api", ["api-v998", "api-v999", "api-v000"]).unwrap(),
            1
        );
    }

    #[test]
    fn all_taken_is_an_error() {
        let names: Vec<String> = (0..1000).map(|n| server_group_name("api", n)).collect();
        let err = next_sequence("api", names.iter().map(String::as_str)).unwrap_err();
        assert!(matches!(err, NamingError::Exhausted { .. }));
        let almost: Vec<&String> = names.iter().filter(|n| *n != "api-v500").collect();
        assert_eq!(
            next_sequence("api", almost.into_iter().map(String::as_str)).unwrap(),
            500
        );
    }
}
