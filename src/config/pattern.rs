//! A pattern on repository or tag names, as an operator writes it in a
//! rule: a glob, or a regular expression after `regex:`. Compiled once,
//! at startup, so that a bad one stops the start with the key it is at.

use std::fmt;

/// A glob (`*`: any run of characters but `/`; `**`: any run, `/`
/// included; `?`: one character; `[a-z]`, `{a,b}`), or, written
/// `regex:<expression>`, a regular expression that must match the whole
/// name.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

/// The prefix of a pattern that is a regular expression.
pub const REGEX_PREFIX: &str = "regex:";

impl Pattern {
    /// `Err` says what is wrong, in words for the operator.
    pub fn parse(text: &str) -> Result<Self, String> {
        let matcher = match text.strip_prefix(REGEX_PREFIX) {
            Some(expression) => Matcher::Regex(
                regex::Regex::new(&format!("^(?:{expression})$"))
                    .map_err(|e| format!("`{text}` is not a regular expression: {e}"))?,
            ),
            None => {
                if text.is_empty() {
                    return Err("an empty pattern matches nothing".to_owned());
                }
                Matcher::Glob(
                    globset::GlobBuilder::new(text)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                        .map_err(|e| format!("`{text}` is not a glob: {}", e.kind()))?
                        .compile_matcher(),
                )
            }
        };
        Ok(Self {
            text: text.to_owned(),
            matcher,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.matcher {
            Matcher::Glob(glob) => glob.is_match(name),
            Matcher::Regex(regex) => regex.is_match(name),
        }
    }

    /// As written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn a_star_stays_within_a_path_segment_and_two_cross_them() {
        assert!(matches("prod/*", "prod/app"));
        assert!(!matches("prod/*", "prod/team/app"));
        assert!(matches("prod/**", "prod/team/app"));
        assert!(!matches("prod/*", "production/app"));
        assert!(matches("v*", "v1.2.3"));
        assert!(!matches("v*", "latest"));
        assert!(matches("release-{1,2}.?", "release-2.x"));
    }

    #[test]
    fn a_regex_matches_the_whole_name() {
        assert!(matches(r"regex:v\d+\.\d+\.\d+", "v1.20.3"));
        assert!(!matches(r"regex:v\d+", "v1-rc"));
        assert!(matches("regex:.*-stable", "team-stable"));
    }

    #[test]
    fn bad_patterns_say_why() {
        let error = Pattern::parse("regex:v(").unwrap_err();
        assert!(error.contains("not a regular expression"), "{error}");
        let error = Pattern::parse("v[1").unwrap_err();
        assert!(error.contains("not a glob"), "{error}");
        assert!(Pattern::parse("").is_err());
    }
}
