//! YAML read the way the old registry read it: PyYAML, YAML 1.1.
//!
//! serde_yaml reads YAML 1.2, where a plain `yes` is a string and a quoted
//! `"true"` cannot be told from a plain `true` once parsed. The legacy files
//! need YAML 1.1 (`yes`/`on`/`off` are booleans, `010` is octal, `1:30` is
//! 90) and the difference between quoted and plain (a quoted `"true"` is a
//! string, and a boolean setting given a string is an error). So the tree is
//! built here from yaml-rust2's events, which report each scalar's style,
//! anchors, aliases and positions; merge keys (`<<`) are applied as PyYAML
//! applies them. `_env:` values are read with the same function, so they get
//! exactly the same semantics.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_yaml::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Why a text is not the YAML we accept, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl YamlError {
    fn at(mark: Marker, message: impl Into<String>) -> Self {
        YamlError {
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }
}

impl From<ScanError> for YamlError {
    fn from(e: ScanError) -> Self {
        YamlError::at(*e.marker(), e.info())
    }
}

/// Deeper nesting is refused: every later walk of the tree recurses, and no
/// configuration needs more than a handful of levels.
pub const MAX_DEPTH: usize = 256;

/// Aliases copy the node they name; a file of nested aliases could ask for
/// billions of copies. No real configuration comes near this many nodes.
const MAX_ALIAS_NODES: usize = 1_000_000;

/// Reads one YAML document (an empty text is null) into a tree, with
/// YAML 1.1 scalars, aliases resolved and merge keys applied.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token()?;
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::at(
                        mark,
                        "a second document (`---`) where a single one was expected",
                    ));
                }
            }
            Event::Alias(id) => builder.alias(id, mark)?,
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(text, style, tag.as_ref(), mark)?;
                builder.finish(value, anchor, mark)?;
            }
            Event::SequenceStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "seq", mark)?;
                builder.check_depth(mark)?;
                builder.stack.push(Frame::Sequence {
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "map", mark)?;
                builder.check_depth(mark)?;
                builder.stack.push(Frame::Mapping {
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => builder.end(mark)?,
        }
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// Where each mapping key of a text stands: its path of keys from the top
/// (`["prod", "cors", "origins"]`) and its 1-based line, in file order.
/// Keys inside lists are left out. For messages about a key: the tree
/// [`parse`] builds has no positions, and a key merged in with `<<` stands
/// where its anchored mapping is. A text [`parse`] refuses gives what was
/// read before the fault.
pub fn key_lines(text: &str) -> Vec<(Vec<String>, usize)> {
    // Per open collection: `Some(expecting a key)` for a mapping, `None`
    // for a list; `path` holds the key of each open mapping value.
    let mut stack: Vec<Option<bool>> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut in_list = 0usize;
    let mut out = Vec::new();
    let mut parser = Parser::new_from_str(text);
    // A value (scalar, alias or closed collection) was placed in the
    // innermost collection: a mapping then expects a key again.
    fn placed(stack: &mut [Option<bool>], path: &mut Vec<String>) {
        if let Some(Some(expecting_key)) = stack.last_mut() {
            if !*expecting_key {
                *expecting_key = true;
                path.pop();
            }
        }
    }
    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(key, ..) if stack.last() == Some(&Some(true)) => {
                if in_list == 0 {
                    let mut at = path.clone();
                    at.push(key.clone());
                    out.push((at, mark.line()));
                }
                if let Some(frame) = stack.last_mut() {
                    *frame = Some(false);
                }
                path.push(key);
            }
            Event::Scalar(..) | Event::Alias(_) => placed(&mut stack, &mut path),
            Event::MappingStart(..) => stack.push(Some(true)),
            Event::SequenceStart(..) => {
                in_list += 1;
                stack.push(None);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if stack.pop() == Some(None) {
                    in_list -= 1;
                }
                placed(&mut stack, &mut path);
            }
            _ => {}
        }
    }
    out
}

/// A scalar as parsed, before it lands in its parent.
enum Parsed {
    Value(Value),
    /// A plain `<<`: a merge key when it is a key, the string `<<` elsewhere.
    MergeKey,
}

enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    Mapping {
        entries: Vec<(Value, Value)>,
        /// The values of `<<` keys, in order, with where they were.
        merges: Vec<(Value, Marker)>,
        key: Option<Key>,
        anchor: usize,
    },
}

enum Key {
    Merge(Marker),
    Value(Value),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    alias_nodes: usize,
    root: Option<Value>,
}

impl Builder {
    fn check_depth(&self, mark: Marker) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError::at(
                mark,
                format!("lists and mappings nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), YamlError> {
        let Some(value) = self.anchors.get(&id) else {
            return Err(YamlError::at(
                mark,
                "an alias to a node that contains the alias itself",
            ));
        };
        self.alias_nodes += count_nodes(value);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(YamlError::at(
                mark,
                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
            ));
        }
        let value = value.clone();
        self.place(Parsed::Value(value), mark)
    }

    /// A scalar is complete: remember its anchor and place it.
    fn finish(&mut self, parsed: Parsed, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if anchor > 0 {
            let value = match &parsed {
                Parsed::Value(v) => v.clone(),
                Parsed::MergeKey => Value::String("<<".into()),
            };
            self.anchors.insert(anchor, value);
        }
        self.place(parsed, mark)
    }

    /// A sequence or mapping ends: build it, remember its anchor, place it.
    fn end(&mut self, mark: Marker) -> Result<(), YamlError> {
        let (value, anchor) = match self.stack.pop() {
            Some(Frame::Sequence { items, anchor }) => (Value::Sequence(items), anchor),
            Some(Frame::Mapping {
                entries,
                merges,
                anchor,
                ..
            }) => (Value::Mapping(merge(entries, merges)?), anchor),
            None => return Err(YamlError::at(mark, "the end of a collection never started")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        self.place(Parsed::Value(value), mark)
    }

    fn place(&mut self, parsed: Parsed, mark: Marker) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(as_value(parsed)),
            Some(Frame::Sequence { items, .. }) => items.push(as_value(parsed)),
            Some(Frame::Mapping {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    *key = Some(match parsed {
                        Parsed::MergeKey => Key::Merge(mark),
                        Parsed::Value(Value::Sequence(_) | Value::Mapping(_)) => {
                            return Err(YamlError::at(mark, "a list or a mapping cannot be a key"))
                        }
                        Parsed::Value(v) => Key::Value(v),
                    })
                }
                Some(Key::Merge(at)) => merges.push((as_value(parsed), at)),
                Some(Key::Value(k)) => entries.push((k, as_value(parsed))),
            },
        }
        Ok(())
    }
}

fn as_value(parsed: Parsed) -> Value {
    match parsed {
        Parsed::Value(v) => v,
        Parsed::MergeKey => Value::String("<<".into()),
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Builds a mapping as PyYAML does: the merged mappings first (of a list,
/// the earlier one wins; of several `<<` keys, the later one), then the
/// mapping's own keys, which win over merged ones wherever `<<` stands.
/// A key keeps the position where it first appeared; a repeated key keeps
/// its last value.
fn merge(entries: Vec<(Value, Value)>, merges: Vec<(Value, Marker)>) -> Result<Mapping, YamlError> {
    let mut out = Mapping::new();
    for (value, mark) in merges {
        let sources = match value {
            Value::Mapping(m) => vec![m],
            Value::Sequence(items) => {
                let mut sources = Vec::with_capacity(items.len());
                for item in items.into_iter().rev() {
                    match item {
                        Value::Mapping(m) => sources.push(m),
                        other => {
                            return Err(YamlError::at(
                                mark,
                                format!(
                                    "a merge key (<<) takes a mapping or a list of mappings; \
                                     this list holds {}",
                                    kind(&other)
                                ),
                            ))
                        }
                    }
                }
                sources
            }
            other => {
                return Err(YamlError::at(
                    mark,
                    format!(
                        "a merge key (<<) takes a mapping or a list of mappings, not {}",
                        kind(&other)
                    ),
                ))
            }
        };
        for source in sources {
            for (k, v) in source {
                out.insert(k, v);
            }
        }
    }
    for (k, v) in entries {
        out.insert(k, v);
    }
    Ok(out)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

const CORE: &str = "tag:yaml.org,2002:";

fn collection_tag(tag: Option<&Tag>, expected: &str, mark: Marker) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.handle == CORE && t.suffix == expected => Ok(()),
        Some(t) if t.handle.is_empty() && t.suffix == "!" => Ok(()),
        Some(t) => Err(unsupported_tag(t, mark)),
    }
}

fn unsupported_tag(tag: &Tag, mark: Marker) -> YamlError {
    let shown = if tag.handle == CORE {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    YamlError::at(
        mark,
        format!(
            "the tag {shown} is not supported (only !!str, !!int, !!float, !!bool, !!null, \
             !!map and !!seq are)"
        ),
    )
}

fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Parsed, YamlError> {
    let bad = |what: &str| YamlError::at(mark, format!("`{text}` is not {what}"));
    let value = match tag {
        None if style == TScalarStyle::Plain => return resolve_plain(&text, mark),
        None => Value::String(text),
        Some(t) if t.handle.is_empty() && t.suffix == "!" => Value::String(text),
        Some(t) if t.handle == CORE => match t.suffix.as_str() {
            "str" => Value::String(text),
            "int" => construct_int(&text).ok_or_else(|| bad("an integer"))?,
            "float" => construct_float(&text).ok_or_else(|| bad("a number"))?,
            "bool" => Value::Bool(construct_bool(&text).ok_or_else(|| bad("a boolean"))?),
            // PyYAML's null ignores the text.
            "null" => Value::Null,
            _ => return Err(unsupported_tag(t, mark)),
        },
        Some(t) => return Err(unsupported_tag(t, mark)),
    };
    Ok(Parsed::Value(value))
}

// PyYAML's implicit resolvers for plain scalars, in the order it tries them.
// Timestamps are left out: they would stay strings here anyway.
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .expect("static regex")
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .expect("static regex")
});

/// What a plain (unquoted, untagged) scalar means in YAML 1.1.
fn resolve_plain(text: &str, mark: Marker) -> Result<Parsed, YamlError> {
    let value = match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Value::Bool(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "<<" => return Ok(Parsed::MergeKey),
        _ if FLOAT.is_match(text) => construct_float(text)
            .ok_or_else(|| YamlError::at(mark, format!("`{text}` is not a valid number")))?,
        _ if INT.is_match(text) => construct_int(text).ok_or_else(|| {
            YamlError::at(
                mark,
                format!("`{text}` is not a valid integer, or too large (quote it to keep it text)"),
            )
        })?,
        _ => Value::String(text.to_owned()),
    };
    Ok(Parsed::Value(value))
}

fn construct_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Splits a leading sign off, as PyYAML's constructors do.
fn sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// An integer in any YAML 1.1 form: `1_000`, `0b101`, `0x1F`, `017`
/// (octal), `1:30` (base 60).
fn construct_int(text: &str) -> Option<Value> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = sign(&cleaned);
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude: i128 = if digits == "0" {
        0
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(digits, 8).ok()?
    } else if digits.contains(':') {
        digits.split(':').try_fold(0i128, |acc, part| {
            acc.checked_mul(60)?.checked_add(part.parse::<i128>().ok()?)
        })?
    } else {
        digits.parse::<i128>().ok()?
    };
    let n = if negative { -magnitude } else { magnitude };
    if let Ok(i) = i64::try_from(n) {
        Some(Value::Number(Number::from(i)))
    } else {
        u64::try_from(n)
            .ok()
            .map(|u| Value::Number(Number::from(u)))
    }
}

/// A float in any YAML 1.1 form: `0.01`, `1.0e+5`, `.inf`, `.NaN`, `1:30.5`.
fn construct_float(text: &str) -> Option<Value> {
    let cleaned = text.replace('_', "").to_ascii_lowercase();
    let (negative, digits) = sign(&cleaned);
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = match digits {
        ".inf" => f64::INFINITY,
        ".nan" => f64::NAN,
        _ if digits.contains(':') => digits.split(':').try_fold(0f64, |acc, part| {
            Some(acc * 60.0 + part.parse::<f64>().ok()?)
        })?,
        _ => digits.parse::<f64>().ok()?,
    };
    Some(Value::Number(Number::from(if negative {
        -magnitude
    } else {
        magnitude
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn int(i: i64) -> Value {
        Value::Number(i.into())
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    /// Each case checked against PyYAML 6 (`yaml.unsafe_load`).
    #[test]
    fn plain_scalars_resolve_as_pyyaml_does() {
        let cases: &[(&str, Value)] = &[
            ("yes", Value::Bool(true)),
            ("Yes", Value::Bool(true)),
            ("YES", Value::Bool(true)),
            ("yEs", s("yEs")),
            ("y", s("y")),
            ("n", s("n")),
            ("on", Value::Bool(true)),
            ("Off", Value::Bool(false)),
            ("OFF", Value::Bool(false)),
            ("oN", s("oN")),
            ("TRUE", Value::Bool(true)),
            ("tRue", s("tRue")),
            ("False", Value::Bool(false)),
            ("~", Value::Null),
            ("null", Value::Null),
            ("Null", Value::Null),
            ("NULL", Value::Null),
            ("nUll", s("nUll")),
            ("", Value::Null),
            ("10", int(10)),
            ("-10", int(-10)),
            ("+10", int(10)),
            ("0", int(0)),
            ("-0", int(0)),
            ("010", int(8)),
            ("08", s("08")),
            ("0x1F", int(31)),
            ("-0x1f", int(-31)),
            ("0b101", int(5)),
            ("1_000", int(1000)),
            ("1__0", int(10)),
            ("_1", s("_1")),
            ("1:30", int(90)),
            ("190:20:30", int(685230)),
            ("12:30:00", int(45000)),
            ("1:60", s("1:60")),
            ("0o17", s("0o17")),
            ("0b", s("0b")),
            ("0x", s("0x")),
            ("1e5", s("1e5")),
            ("1.0e5", s("1.0e5")),
            ("2001-12-14", s("2001-12-14")),
            ("=", s("=")),
            ("18446744073709551615", Value::Number(u64::MAX.into())),
        ];
        for (text, expected) in cases {
            assert_eq!(&one(text), expected, "{text:?}");
        }
        let floats: &[(&str, f64)] = &[
            ("0.01", 0.01),
            ("1.", 1.0),
            ("0.", 0.0),
            ("1.0e+5", 100000.0),
            (".5", 0.5),
            ("1_0.5", 10.5),
            ("-1_2.5e+3", -12500.0),
            ("0.1_", 0.1),
            ("1:30.5", 90.5),
            ("-.inf", f64::NEG_INFINITY),
            ("+.inf", f64::INFINITY),
        ];
        for (text, expected) in floats {
            assert_eq!(one(text).as_f64(), Some(*expected), "{text:?}");
        }
        assert!(one(".NaN").as_f64().is_some_and(f64::is_nan));
    }

    #[test]
    fn quoted_and_block_scalars_are_strings() {
        assert_eq!(one("'true'"), s("true"));
        assert_eq!(one("\"10\""), s("10"));
        assert_eq!(one("\"\""), s(""));
        assert_eq!(one("'~'"), s("~"));
        assert_eq!(one("|\n  yes\n"), s("yes\n"));
        assert_eq!(one("ß∞"), s("ß∞"));
    }

    #[test]
    fn tags_force_a_type() {
        let v = one(
            "a: !!str 10\nb: !!int \"10\"\nc: !!bool 'on'\nd: !!float 3\ne: !!null x\nf: ! yes",
        );
        assert_eq!(v["a"], s("10"));
        assert_eq!(v["b"], int(10));
        assert_eq!(v["c"], Value::Bool(true));
        assert_eq!(v["d"].as_f64(), Some(3.0));
        assert_eq!(v["e"], Value::Null);
        assert_eq!(v["f"], s("yes"));
        let e = parse("a: !!python/name:os.system x").unwrap_err();
        assert!(e.message.contains("!!python/name:os.system"), "{e}");
        assert_eq!(e.line, 1);
        assert!(parse("a: !!int ten").unwrap_err().message.contains("`ten`"));
    }

    #[test]
    fn flow_and_block_collections() {
        assert_eq!(
            one("[one, again]"),
            Value::Sequence(vec![s("one"), s("again")])
        );
        let m = one("{\"one\": \"oneagain\", two: 2}");
        assert_eq!(m["one"], s("oneagain"));
        assert_eq!(m["two"], int(2));
        assert_eq!(one("- a\n- b")[1], s("b"));
        assert_eq!(one("a: b")["a"], s("b"));
    }

    #[test]
    fn merge_keys_follow_pyyaml() {
        // A list: the earlier mapping wins; own keys win over all.
        let v = one("a: {<<: [{x: 1, y: 1}, {x: 2, z: 2}], y: 3}");
        let keys: Vec<_> = v["a"].as_mapping().unwrap().keys().cloned().collect();
        assert_eq!(keys, [s("x"), s("z"), s("y")]);
        assert_eq!(
            (&v["a"]["x"], &v["a"]["y"], &v["a"]["z"]),
            (&int(1), &int(3), &int(2))
        );
        // Own keys win even when written before `<<`.
        let v = one("a: {y: 3, <<: {y: 4, q: 1}}");
        assert_eq!((&v["a"]["y"], &v["a"]["q"]), (&int(3), &int(1)));
        // Two `<<` keys: the later one wins.
        let v = one("a: {<<: {y: 4}, <<: {y: 5, r: 1}}");
        assert_eq!(v["a"]["y"], int(5));
        // A quoted "<<" is an ordinary key.
        assert_eq!(one("\"<<\": {a: 1}")["<<"]["a"], int(1));
        // Chains, three levels deep, each level's own keys winning.
        let v = one(
            "common: &common\n  a: common\n  b: common\n  c: common\n  d: common\n\
             local: &local\n  <<: *common\n  b: local\n  c: local\n  d: local\n\
             dev: &dev\n  <<: *local\n  c: dev\n  d: dev\n\
             test:\n  <<: *dev\n  d: test\n",
        );
        let t = &v["test"];
        assert_eq!(
            (&t["a"], &t["b"], &t["c"], &t["d"]),
            (&s("common"), &s("local"), &s("dev"), &s("test"))
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(one("a: b\na: c")["a"], s("c"));
    }

    #[test]
    fn errors_say_where() {
        let e = parse("a: 1\nbb:\n  c: [1, 2\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("a: *nope").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4), "{e}");
        let e = parse("x: &a [*a]").unwrap_err();
        assert!(e.message.contains("alias"), "{e}");
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("base: 3\na:\n  <<: 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("merge"), "{e}");
        assert!(parse("a: {<<: [1]}").unwrap_err().message.contains("merge"));
        assert!(parse("? [1, 2]\n: x").unwrap_err().message.contains("key"));
        assert!(parse("a: 0b_").unwrap_err().message.contains("0b_"));
        // PyYAML would give a big integer; we say so rather than round it.
        assert!(parse("a: 99999999999999999999")
            .unwrap_err()
            .message
            .contains("too large"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text += &format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, \
                 *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            );
        }
        assert!(parse(&text).unwrap_err().message.contains("aliases"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep: String = (0..300)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        let shallow: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(parse(&shallow).is_ok());
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(one(""), Value::Null);
        assert_eq!(one("# only a comment\n"), Value::Null);
    }
}
