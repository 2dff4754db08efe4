//! Path safety: every app, group and job an operation touches lies under the account's root group.
//!
//! A [`Scope`] is one account's root. It turns what a description says (`region`, `serverGroupName`,
//! a job name) into canonical Marathon ids and Metronome job ids, and refuses anything that resolves
//! outside the root: `..` climbing out, an absolute id under another root. Canonicalisation follows
//! Marathon's own (`.` and empty segments vanish, `..` removes the previous one), so the id checked is
//! the id Marathon would act on.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::AccountConfig;

/// Marathon's rule for one segment of an app or group id.
static ID_SEGMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
    )
    .expect("static regex")
});

/// Metronome's rule for one dot-separated part of a job id.
static JOB_PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(-+[a-z0-9]+)*$").expect("static regex"));

/// Why a path was refused. [`PathError::Outside`] is `FORBIDDEN`; the others are `INVALID_REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path resolves outside the account's root group.
    #[error("{field}: `{given}` resolves to `{resolved}`, which is outside the account's root group `{root}`")]
    Outside {
        field: String,
        given: String,
        resolved: String,
        root: String,
    },
    /// A segment Marathon (or Metronome) would refuse.
    #[error("{field}: `{given}`: segment `{segment}` is not a valid id segment (lower-case letters, digits, `-` inside, `.` between parts)")]
    InvalidSegment {
        field: String,
        given: String,
        segment: String,
    },
    /// An app id that names the root group itself (or nothing at all).
    #[error("{field}: `{given}` names a group, not an app")]
    NotAnApp { field: String, given: String },
}

impl PathError {
    /// The description field the error is about.
    pub fn field(&self) -> &str {
        match self {
            PathError::Outside { field, .. }
            | PathError::InvalidSegment { field, .. }
            | PathError::NotAnApp { field, .. } => field,
        }
    }
}

/// Resolves `path` against `base` (both `/`-separated): an absolute `path` ignores `base`; `.` and
/// empty segments are dropped, `..` removes the segment before it. `None` when `..` climbs above `/`.
/// The answer is absolute, without a trailing slash (`/` for the top).
pub fn canonicalise(base: &str, path: &str) -> Option<String> {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

/// One account's root group and the rules for ids under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    account: String,
    root: String,
}

impl Scope {
    /// The scope of `account` (root from [`AccountConfig::root`]).
    pub fn of(account: &AccountConfig) -> Scope {
        Scope::new(&account.name, &account.root())
    }

    /// A scope with an explicit root (tests, other accounts).
    pub fn new(account: &str, root: &str) -> Scope {
        let root = canonicalise("/", root).unwrap_or_else(|| "/".to_string());
        Scope {
            account: account.to_string(),
            root,
        }
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The root group, absolute, no trailing slash (`/prod`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Whether a canonical id is the root or lies below it.
    pub fn contains(&self, canonical: &str) -> bool {
        canonical == self.root
            || (canonical.starts_with(&self.root)
                && canonical.as_bytes().get(self.root.len()) == Some(&b'/'))
            || self.root == "/"
    }

    /// The group a `region` names: clouddriver-style `web_api` or `web/api` below the root; empty means
    /// the root itself; an absolute path must lie under the root.
    pub fn group(&self, field: &str, region: &str) -> Result<String, PathError> {
        let given = region.trim();
        let path = given.replace('_', "/");
        self.resolve(field, given, &self.root, &path)
    }

    /// The app a `serverGroupName` names: a full id (leading `/`) must lie under the root; a bare name
    /// (`api-main-v003`, or a relative path) is found under root + `region`.
    pub fn app(&self, field: &str, region: &str, name: &str) -> Result<String, PathError> {
        let given = name.trim();
        let id = if given.starts_with('/') {
            self.resolve(field, given, &self.root, given)?
        } else {
            let group = self.group("region", region)?;
            self.resolve(field, given, &group, given)?
        };
        if id == self.root || given.is_empty() {
            return Err(PathError::NotAnApp {
                field: field.to_string(),
                given: given.to_string(),
            });
        }
        Ok(id)
    }

    /// Checks an absolute id that came from elsewhere (an app read from Marathon, a raw `app.id`).
    pub fn check(&self, field: &str, id: &str) -> Result<String, PathError> {
        self.resolve(field, id, &self.root, id)
    }

    /// The Metronome job id for `name`: a bare name (`nightly-report`) goes under the root
    /// (`prod.nightly-report`); a dotted id must start with the root's parts.
    pub fn job(&self, field: &str, name: &str) -> Result<String, PathError> {
        let given = name.trim();
        let root_parts: Vec<&str> = self.root.split('/').filter(|s| !s.is_empty()).collect();
        let prefix = root_parts.join(".");
        let id = if given.contains('.') || prefix.is_empty() {
            given.to_string()
        } else {
            format!("{prefix}.{given}")
        };
        for part in id.split('.') {
            if !JOB_PART.is_match(part) {
                return Err(PathError::InvalidSegment {
                    field: field.to_string(),
                    given: given.to_string(),
                    segment: part.to_string(),
                });
            }
        }
        let inside = prefix.is_empty()
            || (id.starts_with(&prefix) && id.as_bytes().get(prefix.len()) == Some(&b'.'));
        if !inside {
            return Err(PathError::Outside {
                field: field.to_string(),
                given: given.to_string(),
                resolved: id,
                root: self.root.clone(),
            });
        }
        Ok(id)
    }

    fn resolve(
        &self,
        field: &str,
        given: &str,
        base: &str,
        path: &str,
    ) -> Result<String, PathError> {
        let outside = |resolved: String| PathError::Outside {
            field: field.to_string(),
            given: given.to_string(),
            resolved,
            root: self.root.clone(),
        };
        let canonical = canonicalise(base, path).ok_or_else(|| outside("(above /)".into()))?;
        if !self.contains(&canonical) {
            return Err(outside(canonical));
        }
        if let Some(segment) = canonical
            .split('/')
            .filter(|s| !s.is_empty())
            .find(|s| !ID_SEGMENT.is_match(s))
        {
            return Err(PathError::InvalidSegment {
                field: field.to_string(),
                given: given.to_string(),
                segment: segment.to_string(),
            });
        }
        Ok(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("test", "/test")
    }

    #[test]
    fn canonicalisation_follows_marathon() {
        assert_eq!(canonicalise("/a", "b/./c//d").unwrap(), "/a/b/c/d");
        assert_eq!(canonicalise("/a/b", "../c").unwrap(), "/a/c");
        assert_eq!(canonicalise("/a", "/x/../y/").unwrap(), "/y");
        assert_eq!(canonicalise("/", "").unwrap(), "/");
        assert_eq!(canonicalise("/a", "../../b"), None);
    }

    #[test]
    fn regions_in_both_forms() {
        let s = scope();
        assert_eq!(s.group("region", "").unwrap(), "/test");
        assert_eq!(s.group("region", "web/api").unwrap(), "/test/web/api");
        assert_eq!(s.group("region", "web_api").unwrap(), "/test/web/api");
        assert_eq!(s.group("region", "/test/web").unwrap(), "/test/web");
        assert_eq!(s.group("region", "web/../api").unwrap(), "/test/api");
    }

    #[test]
    fn escapes_are_forbidden() {
        let s = scope();
        for region in [
            "..",
            "../other",
            "web/../../other",
            "/other",
            "/",
            "/testing",
            "../../..",
        ] {
            let err = s.group("region", region).unwrap_err();
            assert!(matches!(err, PathError::Outside { .. }), "{region}: {err}");
        }
        for name in [
            "../other/api-v000",
            "/other/api-v000",
            "/test/../other/a",
            "/testx/a",
        ] {
            let err = s.app("serverGroupName", "", name).unwrap_err();
            assert!(matches!(err, PathError::Outside { .. }), "{name}: {err}");
        }
        let err = s.app("serverGroupName", "..", "api-v000").unwrap_err();
        assert_eq!(err.field(), "region");
    }

    #[test]
    fn apps_bare_relative_and_full() {
        let s = scope();
        assert_eq!(
            s.app("n", "web", "api-main-v003").unwrap(),
            "/test/web/api-main-v003"
        );
        assert_eq!(
            s.app("n", "web_api", "x-v001").unwrap(),
            "/test/web/api/x-v001"
        );
        assert_eq!(
            s.app("n", "ignored", "/test/a/b-v000").unwrap(),
            "/test/a/b-v000"
        );
        assert_eq!(s.app("n", "", "a/b").unwrap(), "/test/a/b");
        assert!(matches!(
            s.app("n", "", "/test").unwrap_err(),
            PathError::NotAnApp { .. }
        ));
        assert!(matches!(
            s.app("n", "", "").unwrap_err(),
            PathError::NotAnApp { .. }
        ));
        assert!(matches!(
            s.app("n", "", "Api").unwrap_err(),
            PathError::InvalidSegment { .. }
        ));
        assert!(matches!(
            s.app("n", "", "a-").unwrap_err(),
            PathError::InvalidSegment { .. }
        ));
    }

    #[test]
    fn roots_are_normalised() {
        let s = Scope::new("p", "prod/eu/");
        assert_eq!(s.root(), "/prod/eu");
        assert!(s.contains("/prod/eu/x"));
        assert!(!s.contains("/prod/europe"));
    }

    #[test]
    fn job_ids_under_the_root() {
        let s = Scope::new("prod", "/prod/batch");
        assert_eq!(s.job("jobId", "nightly").unwrap(), "prod.batch.nightly");
        assert_eq!(s.job("jobId", "prod.batch.x.y").unwrap(), "prod.batch.x.y");
        assert!(matches!(
            s.job("jobId", "other.x").unwrap_err(),
            PathError::Outside { .. }
        ));
        assert!(matches!(
            s.job("jobId", "prod.batchy.x").unwrap_err(),
            PathError::Outside { .. }
        ));
        assert!(matches!(
            s.job("jobId", "Bad").unwrap_err(),
            PathError::InvalidSegment { .. }
        ));
    }
}
