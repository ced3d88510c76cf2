//! The operator's rules (`rules` in the flavor file), decided here for
//! both APIs and the collector.
//!
//! **Immutable tags.** A tag an `immutable_tags` pattern names, in a
//! repository the rule covers, once pushed, is never pointed at other
//! content nor deleted; the same content pushed again is accepted, as
//! clients retry. The models ask before they write, under a lock on the
//! tag, so that two first pushes at once cannot both win.
//!
//! **Retention** ([`retention`]): which tags and untagged manifests the
//! collector removes, and why.
//!
//! **Quotas** ([`quota`]): how many bytes the repositories a rule covers
//! may hold between them, kept up to date as pushes and deletes happen.

pub mod quota;
pub mod retention;

use std::fmt;

use crate::config::RuleSettings;
pub use quota::Quota;
pub use retention::Retention;

/// The rules, as configured.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<RuleSettings>,
    /// Each rule's quota, made once (its key is a digest): asked on every
    /// push to a repository a quota covers.
    quotas: Vec<Option<Quota>>,
}

/// A tag a rule holds, and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Immutable {
    pub repository: String,
    pub tag: String,
    /// The pattern that names the tag, as configured.
    pub pattern: String,
}

impl fmt::Display for Immutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tag `{}` of `{}` is immutable (rule `immutable_tags: {}`)",
            self.tag, self.repository, self.pattern
        )
    }
}

impl Rules {
    pub fn new(settings: &[RuleSettings]) -> Self {
        Self {
            rules: settings.to_vec(),
            quotas: settings
                .iter()
                .map(|rule| rule.quota.map(|limit| Quota::new(rule, limit)))
                .collect(),
        }
    }

    /// The rule that holds `tag` of `repository`, if one does.
    pub fn immutable(&self, repository: &str, tag: &str) -> Option<Immutable> {
        self.rules
            .iter()
            .filter(|rule| rule.repositories.iter().any(|p| p.matches(repository)))
            .flat_map(|rule| &rule.immutable_tags)
            .find(|pattern| pattern.matches(tag))
            .map(|pattern| Immutable {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
                pattern: pattern.as_str().to_owned(),
            })
    }

    /// The retention of `repository`: that of the first rule covering it
    /// that sets one (rules are read in the file's order).
    pub fn retention(&self, repository: &str) -> Option<Retention<'_>> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.repositories.iter().any(|p| p.matches(repository)))
            .find_map(|(index, rule)| {
                rule.retention
                    .as_ref()
                    .map(|settings| Retention::new(index, rule, settings))
            })
    }

    /// The quota that bounds `repository`: that of the first rule covering
    /// it that sets one.
    pub fn quota(&self, repository: &str) -> Option<&Quota> {
        self.rules
            .iter()
            .zip(&self.quotas)
            .filter(|(rule, _)| rule.repositories.iter().any(|p| p.matches(repository)))
            .find_map(|(_, quota)| quota.as_ref())
    }

    /// Every quota, each once (the collector sets each one's usage right).
    pub fn quotas(&self) -> impl Iterator<Item = &Quota> {
        self.quotas.iter().flatten()
    }

    /// Whether any rule sets a retention (else the collector asks nothing).
    pub fn any_retention(&self) -> bool {
        self.rules.iter().any(|r| r.retention.is_some())
    }

    /// The first of `tags` of `repository` a rule holds.
    pub fn first_immutable<'t>(
        &self,
        repository: &str,
        tags: impl IntoIterator<Item = &'t str>,
    ) -> Option<Immutable> {
        tags.into_iter()
            .find_map(|tag| self.immutable(repository, tag))
    }
}

/// Logs and counts a push that would point a tag a rule holds at other
/// content than `current`; the message for the client.
pub fn refuse_push(what: Immutable, current: &str) -> String {
    refuse(
        "refused_push",
        format!("{what}: it points at {current}; push this under another tag"),
    )
}

/// Logs and counts a delete that would take away a tag a rule holds (the
/// tag, its manifest, or its repository); the message for the client.
pub fn refuse_delete(what: Immutable) -> String {
    refuse("refused_delete", format!("{what}: it cannot be deleted"))
}

fn refuse(action: &str, message: String) -> String {
    log::warn!("{action}: {message}");
    count("immutable_tags", action);
    message
}

/// Counts what a rule did in `registry_rule_actions_total`.
pub fn count(rule: &str, action: &str) {
    crate::metrics::get()
        .rule_actions
        .with_label_values(&[rule, action])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;

    fn rules() -> Rules {
        let p = |t: &str| Pattern::parse(t).unwrap();
        Rules::new(&[
            RuleSettings {
                repositories: vec![p("prod/*")],
                immutable_tags: vec![p("v*")],
                retention: None,
                quota: None,
            },
            RuleSettings {
                repositories: vec![p("**")],
                immutable_tags: vec![p("release-*")],
                retention: None,
                quota: None,
            },
        ])
    }

    #[test]
    fn a_tag_is_held_by_the_rules_that_cover_its_repository() {
        let rules = rules();
        let held = rules.immutable("prod/app", "v1.0").unwrap();
        assert_eq!(held.pattern, "v*");
        assert_eq!(
            held.to_string(),
            "tag `v1.0` of `prod/app` is immutable (rule `immutable_tags: v*`)"
        );
        assert!(rules.immutable("dev/app", "v1.0").is_none());
        assert!(rules.immutable("prod/app", "latest").is_none());
        assert!(rules.immutable("dev/team/app", "release-3").is_some());
        assert_eq!(
            rules
                .first_immutable("prod/app", ["latest", "v2", "release-1"])
                .unwrap()
                .tag,
            "v2"
        );
        assert!(Rules::default().immutable("prod/app", "v1").is_none());
    }
}
