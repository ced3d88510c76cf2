//! JSON written the way the old registry wrote it (Python's `json.dumps`):
//! `", "` and `": "` between items, keys in insertion order, everything
//! outside printable ASCII escaped as `\uXXXX`. The files we store are then
//! byte for byte the ones the old registry would have stored, so a folder
//! or bucket diffed before and after the switch shows no change.

use std::io::{self, Write};

use bytes::Bytes;
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, Serializer};

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json has escaped quotes, backslashes and control bytes
        // already; Python's ensure_ascii also escapes DEL and non-ASCII.
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\u{7f}' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        CompactFormatter.write_f64(w, value)
    }
}

/// `value` as the old registry would have written it.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(128);
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Serializing our own values (maps, lists, strings, numbers) into a
    // Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_matches_python_json_dumps() {
        // The expected texts are what `json.dumps` prints for the same values.
        assert_eq!(&to_bytes(&json!(["a", "b"]))[..], br#"["a", "b"]"#);
        assert_eq!(
            &to_bytes(&json!({"last_update": 1, "docker_version": "1.3.0", "kernel": null}))[..],
            br#"{"last_update": 1, "docker_version": "1.3.0", "kernel": null}"#
        );
        assert_eq!(&to_bytes(&json!([]))[..], b"[]");
        assert_eq!(&to_bytes(&json!({}))[..], b"{}");
        assert_eq!(
            &to_bytes(&json!([["/", "d", false, 0]]))[..],
            br#"[["/", "d", false, 0]]"#
        );
        assert_eq!(
            &to_bytes(&json!("ß∞ \u{1F600} \u{7f} \" \\ \n"))[..],
            br#""\u00df\u221e \ud83d\ude00 \u007f \" \\ \n""#
        );
    }
}
