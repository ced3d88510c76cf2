//! Retention: which tags of a repository a rule keeps, and why the others
//! go. The collector asks, for each repository a rule covers, with the
//! time each tag was pushed (when this registry wrote its link: no clock
//! in an image's config counts), and removes what comes back; `gc
//! --dry-run` prints the reasons.
//!
//! A tag stays when any of these holds: it is among the `keep_last`
//! tags most recently pushed, it was pushed within `keep_within`, a
//! `keep_tags` pattern names it (`latest` unless the rule lists its
//! own), or a rule holds it immutable. A rule without `keep_last` nor
//! `keep_within` removes no tag. Manifests no tag reaches go once their
//! push is older than `untagged_after`; where the rule prunes tags and
//! sets no such age, at once.

use std::time::{Duration, SystemTime};

use crate::config::{RetentionSettings, RuleSettings};

/// The retention of one rule.
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    /// The rule's place in `rules` (from 0), for the reasons.
    index: usize,
    rule: &'a RuleSettings,
    settings: &'a RetentionSettings,
}

/// A tag and when this registry last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTag {
    pub tag: String,
    pub pushed: SystemTime,
}

/// A tag the rule removes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub tag: String,
    pub pushed: SystemTime,
    pub why: String,
}

impl<'a> Retention<'a> {
    pub(super) fn new(
        index: usize,
        rule: &'a RuleSettings,
        settings: &'a RetentionSettings,
    ) -> Self {
        Self {
            index,
            rule,
            settings,
        }
    }

    /// Whether the rule removes tags at all.
    pub fn prunes_tags(&self) -> bool {
        self.settings.prunes_tags()
    }

    /// The age past which an untagged manifest goes, when the rule sets one.
    pub fn untagged_after(&self) -> Option<Duration> {
        self.settings.untagged_after
    }

    /// `rule 2 (repositories: ci/*)`, as the reasons and the log name it.
    pub fn name(&self) -> String {
        let patterns: Vec<&str> = self.rule.repositories.iter().map(|p| p.as_str()).collect();
        format!(
            "rule {} (repositories: {})",
            self.index + 1,
            patterns.join(", ")
        )
    }

    /// The tags of one repository that go at `now`, newest first; never
    /// one that `held` (an immutable tag) says is held.
    pub fn removals(
        &self,
        tags: &[PushedTag],
        now: SystemTime,
        held: impl Fn(&str) -> bool,
    ) -> Vec<Removal> {
        if !self.prunes_tags() {
            return Vec::new();
        }
        let mut newest_first: Vec<&PushedTag> = tags.iter().collect();
        // Ties (one second on some stores) by name, so that runs agree.
        newest_first.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.cmp(&b.tag)));
        let s = self.settings;
        let mut out = Vec::new();
        for (rank, pushed) in newest_first.into_iter().enumerate() {
            let age = now.duration_since(pushed.pushed).unwrap_or_default();
            let kept = s.keep_last.is_some_and(|n| rank < n)
                || s.keep_within.is_some_and(|window| age <= window)
                || s.keep_tags.iter().any(|p| p.matches(&pushed.tag))
                || held(&pushed.tag);
            if kept {
                continue;
            }
            let mut why = Vec::new();
            if let Some(n) = s.keep_last {
                why.push(format!(
                    "not among the {n} most recently pushed (number {})",
                    rank + 1
                ));
            }
            if let Some(window) = s.keep_within {
                why.push(format!(
                    "pushed {} ago, before keep_within {}",
                    span(age),
                    span(window)
                ));
            }
            out.push(Removal {
                tag: pushed.tag.clone(),
                pushed: pushed.pushed,
                why: format!("{}: {}", self.name(), why.join(", ")),
            });
        }
        out
    }

    /// Why an untagged manifest pushed at `pushed` goes at `now`, if it
    /// does: once older than `untagged_after`; where the rule prunes tags
    /// and sets no such age, at once (what its removals leave untagged
    /// would else stay, and free nothing).
    pub fn untagged_goes(&self, pushed: SystemTime, now: SystemTime) -> Option<String> {
        let age = now.duration_since(pushed).unwrap_or_default();
        match self.settings.untagged_after {
            Some(after) => (age >= after).then(|| {
                format!(
                    "{}: untagged, pushed {} ago, past untagged_after {}",
                    self.name(),
                    span(age),
                    span(after)
                )
            }),
            None if self.prunes_tags() => Some(format!(
                "{}: untagged in a repository whose tags the rule prunes",
                self.name()
            )),
            None => None,
        }
    }
}

/// `3d 4h`, `12m`: a span as an operator reads it, to the minute.
fn span(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        format!("{}s", d.as_secs())
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::registry::rules::Rules;

    const HOUR: Duration = Duration::from_secs(3600);

    fn rule(settings: RetentionSettings) -> Rules {
        Rules::new(&[RuleSettings {
            repositories: vec![Pattern::parse("ci/*").unwrap()],
            immutable_tags: vec![Pattern::parse("v*").unwrap()],
            retention: Some(settings),
            quota: None,
        }])
    }

    fn settings() -> RetentionSettings {
        RetentionSettings {
            keep_last: None,
            keep_within: None,
            keep_tags: vec![Pattern::parse("latest").unwrap()],
            untagged_after: None,
        }
    }

    /// Tags `t0` (newest) .. `t<n-1>`, an hour apart; `latest` and `v1`
    /// the oldest of all.
    fn tags(now: SystemTime, n: usize) -> Vec<PushedTag> {
        let mut tags: Vec<PushedTag> = (0..n)
            .map(|i| PushedTag {
                tag: format!("t{i}"),
                pushed: now - HOUR * i as u32,
            })
            .collect();
        for old in ["latest", "v1"] {
            tags.push(PushedTag {
                tag: old.into(),
                pushed: now - HOUR * 1000,
            });
        }
        tags
    }

    fn removed(rules: &Rules, tags: &[PushedTag], now: SystemTime) -> Vec<String> {
        let retention = rules.retention("ci/app").unwrap();
        retention
            .removals(tags, now, |t| rules.immutable("ci/app", t).is_some())
            .into_iter()
            .map(|r| r.tag)
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_and_what_patterns_and_immutability_hold() {
        let now = SystemTime::now();
        let rules = rule(RetentionSettings {
            keep_last: Some(3),
            ..settings()
        });
        let tags = tags(now, 6);
        assert_eq!(removed(&rules, &tags, now), ["t3", "t4", "t5"]);
        let why = rules
            .retention("ci/app")
            .unwrap()
            .removals(&tags, now, |_| false)[0]
            .why
            .clone();
        assert_eq!(
            why,
            "rule 1 (repositories: ci/*): not among the 3 most recently pushed (number 4)"
        );
        assert!(rules.retention("other/app").is_none());
    }

    #[test]
    fn keep_within_and_keep_last_keep_either_way() {
        let now = SystemTime::now();
        let within = rule(RetentionSettings {
            keep_within: Some(HOUR * 2),
            keep_tags: Vec::new(),
            ..settings()
        });
        // `latest` goes when keep_tags is the operator's own (here none).
        assert_eq!(removed(&within, &tags(now, 5), now), ["t3", "t4", "latest"]);
        let both = rule(RetentionSettings {
            keep_last: Some(4),
            keep_within: Some(HOUR * 2),
            ..settings()
        });
        assert_eq!(removed(&both, &tags(now, 5), now), ["t4"]);
        let why = &both
            .retention("ci/app")
            .unwrap()
            .removals(&tags(now, 5), now, |_| false)[0]
            .why;
        assert!(
            why.ends_with("pushed 4h ago, before keep_within 2h"),
            "{why}"
        );
    }

    #[test]
    fn a_rule_without_keep_last_or_keep_within_removes_no_tag() {
        let now = SystemTime::now();
        let rules = rule(RetentionSettings {
            untagged_after: Some(HOUR * 24),
            ..settings()
        });
        assert!(removed(&rules, &tags(now, 10), now).is_empty());
        let retention = rules.retention("ci/app").unwrap();
        assert!(retention.untagged_goes(now - HOUR * 23, now).is_none());
        assert_eq!(
            retention.untagged_goes(now - HOUR * 25, now).unwrap(),
            "rule 1 (repositories: ci/*): untagged, pushed 1d 1h ago, past untagged_after 1d"
        );
        let pruning = rule(RetentionSettings {
            keep_last: Some(1),
            ..settings()
        });
        let retention = pruning.retention("ci/app").unwrap();
        assert!(retention.untagged_goes(now, now).is_some());
    }
}
