//! `WWW-Authenticate` challenges (RFC 9110, 11.6.1), as registries send
//! them: `Bearer realm="https://auth.docker.io/token",service="...",
//! scope="repository:library/busybox:pull"`, or `Basic realm="..."`.

use std::collections::HashMap;

/// One challenge: its scheme (lower case) and its parameters (names in
/// lower case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Every challenge of one header value. Quoted values may hold commas and
/// escaped quotes; a value that breaks the grammar ends the parse (what
/// came before it is kept).
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        // A token: either a new scheme or a parameter name.
        let end = rest.find([' ', '=', ',']).unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start();
        if token.is_empty() {
            rest = after.strip_prefix(',').unwrap_or(after).trim_start();
            if rest.len() == after.len() && !after.is_empty() {
                break;
            }
            continue;
        }
        if let Some(value_part) = after.strip_prefix('=') {
            // `name=value` of the current challenge.
            let value_part = value_part.trim_start();
            let (value, remaining) = match value_part.strip_prefix('"') {
                Some(quoted) => match quoted_string(quoted) {
                    Some(parsed) => parsed,
                    None => break,
                },
                None => {
                    let end = value_part.find(',').unwrap_or(value_part.len());
                    (value_part[..end].trim().to_owned(), &value_part[end..])
                }
            };
            match out.last_mut() {
                Some(challenge) => {
                    challenge.params.insert(token.to_ascii_lowercase(), value);
                }
                None => break,
            }
            let remaining = remaining.trim_start();
            rest = remaining
                .strip_prefix(',')
                .unwrap_or(remaining)
                .trim_start();
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: HashMap::new(),
            });
            rest = after.strip_prefix(',').unwrap_or(after).trim_start();
        }
    }
    out
}

/// The text of a quoted string whose opening quote is already consumed,
/// and what follows its closing quote.
fn quoted_string(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/busybox:pull,push")
        );
    }

    #[test]
    fn several_challenges_tokens_and_escapes() {
        let c =
            parse(r#"Basic realm="a \"quoted\" realm", Bearer realm=https://x/token , service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[1].param("realm"), Some("https://x/token"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn broken_headers_keep_what_parsed() {
        assert!(parse("").is_empty());
        assert!(parse("realm=\"x\"").is_empty());
        let c = parse(r#"Bearer realm="unterminated"#);
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
        assert_eq!(parse("Basic")[0].scheme, "basic");
    }
}
