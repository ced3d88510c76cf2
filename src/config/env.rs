//! `_env:NAME[:DEFAULT]` values: replaced by an environment variable, read
//! as YAML 1.1 with the same reader as the file.
//!
//! As in the old registry: values are expanded at every depth of nested
//! mappings (a mapping that a variable yields included) but never inside
//! lists; an empty variable is null even when a default is given.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_yaml::Value;

use super::yaml::{self, YamlError};

/// Reads an environment variable; injectable so that tests need not touch
/// the process environment.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Where the value of a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvUse {
    pub var: String,
    /// The variable was set (else the default, or null, was used).
    pub set: bool,
}

/// The dotted path of each setting (`cors.headers`) that `_env:` gave.
pub type Origins = BTreeMap<String, EnvUse>;

/// A mapping that a variable yields may itself hold `_env:` values; a
/// variable naming itself would otherwise never end. Counted in levels of
/// mappings, so the tree stays shallow enough to walk recursively.
const MAX_DEPTH: usize = 2 * yaml::MAX_DEPTH;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("the environment variable {var} is not valid UTF-8")]
    NotUnicode { key: String, var: String },
    #[error("{} is not valid YAML ({error})", describe_source(.var, .value, *.set))]
    NotYaml {
        key: String,
        var: String,
        /// `None` when the setting is a secret and its value stays unprinted.
        value: Option<String>,
        set: bool,
        error: YamlError,
    },
    #[error("the environment variable {var} yields mappings nested more than {MAX_DEPTH} levels deep through `_env:`")]
    TooDeep { key: String, var: String },
}

impl EnvError {
    /// The dotted path of the setting at fault.
    pub fn key(&self) -> &str {
        match self {
            EnvError::NotUnicode { key, .. }
            | EnvError::NotYaml { key, .. }
            | EnvError::TooDeep { key, .. } => key,
        }
    }
}

fn describe_source(var: &str, value: &Option<String>, set: bool) -> String {
    let value = match value {
        Some(v) => format!("`{v}`"),
        None => "(a secret, not shown)".to_owned(),
    };
    if set {
        format!("the value {value} of the environment variable {var}")
    } else {
        format!("the default {value} given for the unset environment variable {var}")
    }
}

/// `_env:NAME[:DEFAULT]` split as the old registry did: on the first two
/// colons, so a default may hold colons (`https://...`).
fn spec(text: &str) -> Option<(&str, Option<&str>)> {
    let rest = text.strip_prefix("_env:")?;
    Some(match rest.split_once(':') {
        Some((name, default)) => (name, Some(default)),
        None => (rest, None),
    })
}

/// Replaces every `_env:` string in the mappings of `tree`, recording in
/// `origins` which setting came from which variable.
pub fn expand(tree: &mut Value, lookup: Lookup, origins: &mut Origins) -> Result<(), EnvError> {
    expand_mapping(tree, "", lookup, origins, 0)
}

fn expand_mapping(
    value: &mut Value,
    path: &str,
    lookup: Lookup,
    origins: &mut Origins,
    depth: usize,
) -> Result<(), EnvError> {
    // The mappings of a list (the endpoints of `notifications`) are read
    // as any other; a plain value in a list stays as written, as the old
    // registry left it.
    if let Value::Sequence(items) = value {
        for (i, item) in items.iter_mut().enumerate() {
            expand_mapping(item, &format!("{path}[{i}]"), lookup, origins, depth)?;
        }
        return Ok(());
    }
    let Value::Mapping(mapping) = value else {
        return Ok(());
    };
    for (key, value) in mapping.iter_mut() {
        let name = key_text(key);
        let path = if path.is_empty() {
            name
        } else {
            format!("{path}.{name}")
        };
        expand_value(value, &path, lookup, origins, depth + 1)?;
    }
    Ok(())
}

fn expand_value(
    value: &mut Value,
    path: &str,
    lookup: Lookup,
    origins: &mut Origins,
    depth: usize,
) -> Result<(), EnvError> {
    let Some((var, default)) = value.as_str().and_then(spec) else {
        return expand_mapping(value, path, lookup, origins, depth);
    };
    if depth >= MAX_DEPTH {
        return Err(EnvError::TooDeep {
            key: path.to_owned(),
            var: var.to_owned(),
        });
    }
    let var = var.to_owned();
    let found = read_var(&var, lookup).map_err(|()| EnvError::NotUnicode {
        key: path.to_owned(),
        var: var.clone(),
    })?;
    let set = found.is_some();
    let text = found.unwrap_or_else(|| default.unwrap_or("").to_owned());
    let parsed = yaml::parse(&text).map_err(|error| EnvError::NotYaml {
        key: path.to_owned(),
        var: var.clone(),
        value: (!super::render::is_secret_path(path)).then(|| text.clone()),
        set,
        error,
    })?;
    *value = parsed;
    origins.insert(
        path.to_owned(),
        EnvUse {
            var: var.clone(),
            set,
        },
    );
    expand_mapping(value, path, lookup, origins, depth)
}

/// `Ok(None)`: unset. A name the environment cannot hold (empty, with `=`
/// or NUL) is simply unset, as `os.environ.get` had it.
fn read_var(var: &str, lookup: Lookup) -> Result<Option<String>, ()> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Ok(None);
    }
    match lookup(var) {
        None => Ok(None),
        Some(os) => os.into_string().map(Some).map_err(|_| ()),
    }
}

/// A key as text, for dotted paths and messages.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The cases of the old registry's own configuration tests, as facts.
    const FIXTURE: &str = r#"
booltrue: true
boolfalse: false
uint: 10
int: -10
float: 0.01
emptystring: ""
isnone: ~
nonemptystring: nonemptystring
anothernonemptystring: 'nonemptystring'
yetanothernonemptystring: "nonemptystring"
array:
    - one
    - two
    - three
dict:
    one: valueone
    two: valuetwo
uni: ß∞
ENV:
    booltrue: _env:BOOLTRUE:true
    boolfalse: _env:BOOLFALSE:false
    uint: _env:UINT:10
    int: _env:INT:-10
    float: _env:FLOAT:0.01
    emptystring: _env:EMPTYSTRING:""
    isnone: _env:ISNONE
    nonemptystring: _env:NONEMPTYSTRING:nonemptystring
    anothernonemptystring: _env:ANOTHERNONEMPTYSTRING:'nonemptystring'
    yetanothernonemptystring: "_env:YETANOTHERNONEMPTYSTRING:\"nonemptystring\""
    bugger: _env:BUGGER:bug:me:endlessly
    array: _env:ARRAY:[one, two, three]
    dict: _env:DICT
    inlist: [_env:BOOLTRUE:true]
"#;

    fn resolve(env: &[(&str, &str)]) -> Value {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let lookup = move |name: &str| env.get(name).cloned();
        let mut tree = yaml::parse(FIXTURE).unwrap();
        let mut origins = Origins::new();
        expand(&mut tree, &lookup, &mut origins).unwrap();
        tree
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn int(i: i64) -> Value {
        Value::Number(i.into())
    }

    fn assert_plain_values(c: &Value) {
        assert_eq!(c["booltrue"], Value::Bool(true));
        assert_ne!(c["booltrue"], s("True"));
        assert_eq!(c["boolfalse"], Value::Bool(false));
        assert_eq!(c["uint"], int(10));
        assert_ne!(c["uint"], s("10"));
        assert_eq!(c["int"], int(-10));
        assert_eq!(c["float"].as_f64(), Some(0.01));
        assert_eq!(c["emptystring"], s(""));
        assert_eq!(c["isnone"], Value::Null);
        assert_eq!(c["nonemptystring"], s("nonemptystring"));
        assert_eq!(c["anothernonemptystring"], s("nonemptystring"));
        assert_eq!(c["yetanothernonemptystring"], s("nonemptystring"));
        assert_eq!(c["array"][2], s("three"));
        assert_eq!(c["array"].as_sequence().map(Vec::len), Some(3));
    }

    #[test]
    fn simple_types() {
        let c = resolve(&[]);
        assert_plain_values(&c);
        assert_eq!(c["dict"]["two"], s("valuetwo"));
        assert_eq!(c["uni"], s("ß∞"));
    }

    #[test]
    fn env_defaults_give_the_same_typed_values() {
        let c = resolve(&[]);
        let e = &c["ENV"];
        assert_plain_values(e);
        assert_eq!(e["bugger"], s("bug:me:endlessly"));
        assert_eq!(e["dict"], Value::Null);
    }

    #[test]
    fn env_overrides() {
        let c = resolve(&[
            ("BOOLTRUE", "False"),
            ("BOOLFALSE", "True"),
            ("UINT", "0"),
            ("INT", "0"),
            ("FLOAT", "0"),
            ("EMPTYSTRING", "NOTREALLY"),
            ("ISNONE", "False"),
            ("NONEMPTYSTRING", "\"\""),
            ("BUGGER", "\"whatever:the:flush:\""),
            ("ARRAY", "[one, again]"),
            ("DICT", r#"{"one": "oneagain", "two": "twoagain"}"#),
        ]);
        let e = &c["ENV"];
        assert_eq!(e["booltrue"], Value::Bool(false));
        assert_eq!(e["boolfalse"], Value::Bool(true));
        assert_eq!(e["uint"], int(0));
        assert_eq!(e["int"], int(0));
        assert_eq!(e["float"], int(0));
        assert_eq!(e["emptystring"], s("NOTREALLY"));
        assert_eq!(e["isnone"], Value::Bool(false));
        assert_eq!(e["nonemptystring"], s(""));
        assert_eq!(e["anothernonemptystring"], s("nonemptystring"));
        assert_eq!(e["bugger"], s("whatever:the:flush:"));
        assert_eq!(e["array"][1], s("again"));
        assert_eq!(e["array"].as_sequence().map(Vec::len), Some(2));
        assert_eq!(e["dict"]["one"], s("oneagain"));
        // Values inside lists stay as written.
        assert_eq!(e["inlist"][0], s("_env:BOOLTRUE:true"));
    }

    #[test]
    fn an_empty_variable_is_null_even_with_a_default() {
        let c = resolve(&[("ISNONE", ""), ("UINT", "")]);
        assert_eq!(c["ENV"]["isnone"], Value::Null);
        assert_eq!(c["ENV"]["uint"], Value::Null);
    }

    #[test]
    fn mappings_from_variables_expand_in_turn() {
        let c = resolve(&[
            (
                "DICT",
                r#"{"one": "_env:INNER:fallback", "two": {"three": "_env:UINT"}}"#,
            ),
            ("UINT", "7"),
        ]);
        assert_eq!(c["ENV"]["dict"]["one"], s("fallback"));
        assert_eq!(c["ENV"]["dict"]["two"]["three"], int(7));
    }

    #[test]
    fn a_variable_naming_itself_is_refused() {
        let lookup = |name: &str| (name == "LOOP").then(|| OsString::from("{a: _env:LOOP}"));
        let mut tree = yaml::parse("x: _env:LOOP").unwrap();
        let e = expand(&mut tree, &lookup, &mut Origins::new()).unwrap_err();
        assert!(matches!(e, EnvError::TooDeep { .. }), "{e}");
    }

    #[test]
    fn origins_name_the_variable() {
        let lookup = |name: &str| (name == "CORS_HEADERS").then(|| OsString::from("[X-A]"));
        let mut tree =
            yaml::parse("cors:\n  headers: _env:CORS_HEADERS\n  origins: _env:CORS_ORIGINS")
                .unwrap();
        let mut origins = Origins::new();
        expand(&mut tree, &lookup, &mut origins).unwrap();
        assert_eq!(
            origins.get("cors.headers"),
            Some(&EnvUse {
                var: "CORS_HEADERS".into(),
                set: true
            })
        );
        assert_eq!(origins.get("cors.origins").map(|u| u.set), Some(false));
    }

    #[test]
    fn invalid_values_name_the_variable_and_value() {
        let lookup = |name: &str| (name == "LOGLEVEL").then(|| OsString::from("[oops"));
        let mut tree = yaml::parse("loglevel: _env:LOGLEVEL:info").unwrap();
        let e = expand(&mut tree, &lookup, &mut Origins::new()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("LOGLEVEL") && text.contains("`[oops`"),
            "{text}"
        );
        assert_eq!(e.key(), "loglevel");
    }

    #[test]
    fn invalid_secret_values_stay_hidden() {
        let lookup = |name: &str| (name == "AWS_SECRET").then(|| OsString::from("@hunter2"));
        let mut tree = yaml::parse("s3_secret_key: _env:AWS_SECRET").unwrap();
        let e = expand(&mut tree, &lookup, &mut Origins::new()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("AWS_SECRET") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_values_name_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let lookup = |_: &str| Some(OsString::from_vec(vec![0xff, 0xfe]));
        let mut tree = yaml::parse("a: _env:BAD").unwrap();
        let e = expand(&mut tree, &lookup, &mut Origins::new()).unwrap_err();
        assert!(e.to_string().contains("BAD"), "{e}");
    }

    #[test]
    fn spec_splits_on_the_first_two_colons() {
        assert_eq!(spec("_env:A"), Some(("A", None)));
        assert_eq!(spec("_env:A:"), Some(("A", Some(""))));
        assert_eq!(
            spec("_env:I:https://index.docker.io"),
            Some(("I", Some("https://index.docker.io")))
        );
        assert_eq!(spec("_env:"), Some(("", None)));
        assert_eq!(spec("env:A"), None);
    }
}
