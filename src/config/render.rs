//! `registry-v1 config`: the resolved flavor as YAML or JSON, secrets
//! masked.

use serde_yaml::Value;
use yaml_rust2::{Yaml, YamlEmitter};

use super::env::key_text;
use super::{yaml, ConfigError, Settings};

/// What a masked value reads as.
pub const MASK: &str = "*****";

/// Whether a setting holds a secret, judged by its key: access keys,
/// secrets, passwords, tokens, credentials, the bugsnag API key.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    // Paths to public keys and password hashes, a URL and names, not
    // secrets; seeing them helps.
    if [
        "privileged_key",
        "auth_htpasswd",
        "auth_token_realm",
        "auth_token_service",
        "auth_token_issuer",
        "auth_token_rootcertbundle",
        "tls_key",
    ]
    .contains(&key.as_str())
    {
        return false;
    }
    [
        "key",
        "secret",
        "pass",
        "token",
        "credential",
        "accessid",
        "bugsnag",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// [`is_secret`] for the last part of a dotted path (`cache.password`).
pub fn is_secret_path(path: &str) -> bool {
    is_secret(path.rsplit('.').next().unwrap_or(path))
}

/// A copy of `value` whose secrets (set ones: null stays visible) read
/// [`MASK`], at any depth.
pub fn mask(value: &Value) -> Value {
    match value {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| {
                    let key = key_text(k);
                    let secret = !v.is_null() && is_secret(&key);
                    let v = if secret {
                        Value::String(MASK.to_owned())
                    } else if key == "headers" && v.is_mapping() {
                        // A notification endpoint's headers: tokens,
                        // whatever the header is called.
                        mask_every_value(v)
                    } else if key == "endpoints" && v.is_sequence() {
                        mask_endpoints(v)
                    } else {
                        mask(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.iter().map(mask).collect()),
        Value::String(text) => Value::String(mask_url_password(text)),
        other => other.clone(),
    }
}

/// A webhook's URL as logs and `registry-v1 config` show it: its origin,
/// the path and query (where webhooks often carry their key) masked.
pub fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!("{}/{MASK}", parsed.origin().ascii_serialization()),
        Err(_) => MASK.to_owned(),
    }
}

/// `notifications.endpoints`, masked as any setting, and each `url` read
/// as its origin: a webhook's path often holds its key.
fn mask_endpoints(value: &Value) -> Value {
    let Value::Sequence(items) = mask(value) else {
        return mask(value);
    };
    let items = items.into_iter().map(|mut item| {
        if let Some(Value::String(url)) = item.get_mut("url") {
            *url = masked_url(url);
        }
        item
    });
    Value::Sequence(items.collect())
}

/// `value` with every string, at any depth, read as [`MASK`].
fn mask_every_value(value: &Value) -> Value {
    match value {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), mask_every_value(v)))
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.iter().map(mask_every_value).collect()),
        Value::String(_) => Value::String(MASK.to_owned()),
        other => other.clone(),
    }
}

/// A URL's password (`postgresql://user:secret@host/db`), whatever the key
/// that holds it: a database URL is not named like a secret.
fn mask_url_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:{MASK}@{host}{tail}")
        }
        _ => text.to_owned(),
    };
    // libpq's `password=` option.
    if let Some((before, query)) = out.split_once('?') {
        let options: Vec<String> = query
            .split('&')
            .map(|option| match option.split_once('=') {
                Some((key, _)) if is_secret(key) => format!("{key}={MASK}"),
                _ => option.to_owned(),
            })
            .collect();
        out = format!("{before}?{}", options.join("&"));
    }
    out
}

/// The resolved configuration of the chosen flavor, secrets masked: YAML
/// (read back by our reader as the same values) or JSON.
pub fn render(settings: &Settings, json: bool) -> Result<String, ConfigError> {
    let masked = mask(&settings.raw);
    if json {
        return to_json(&masked);
    }
    let mut out = format!(
        "# registry-v1: flavor `{}` of {}, secrets masked\n",
        settings.flavor, settings.source
    );
    let mut body = String::new();
    YamlEmitter::new(&mut body)
        .dump(&to_yaml(&masked))
        .map_err(|e| ConfigError::Output(e.to_string()))?;
    // The emitter quotes what YAML 1.2 would misread; a few YAML 1.1 forms
    // (`1_000`, `0b1`) it leaves plain. JSON is YAML too, and unambiguous.
    if yaml::parse(&body).ok().as_ref() == Some(&masked) {
        out += &body;
        out.push('\n');
    } else {
        out += &to_json(&masked)?;
    }
    Ok(out)
}

fn to_json(value: &Value) -> Result<String, ConfigError> {
    let mut text = serde_json::to_string_pretty(&json_value(value))
        .map_err(|e| ConfigError::Output(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

fn json_value(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null | Value::Tagged(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f).map_or_else(|| J::String(float_text(f)), J::Number)
            }
        }
        Value::String(s) => J::String(s.clone()),
        Value::Sequence(items) => J::Array(items.iter().map(json_value).collect()),
        Value::Mapping(m) => J::Object(
            m.iter()
                .map(|(k, v)| (key_text(k), json_value(v)))
                .collect(),
        ),
    }
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null | Value::Tagged(_) => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => match n.as_u64() {
                Some(u) => Yaml::Real(u.to_string()),
                None => Yaml::Real(float_text(n.as_f64().unwrap_or(f64::NAN))),
            },
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Sequence(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Mapping(m) => Yaml::Hash(m.iter().map(|(k, v)| (to_yaml(k), to_yaml(v))).collect()),
    }
}

/// A float as YAML 1.1 reads it back as a float: with a dot, `.inf`, `.nan`.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        let text = f.to_string();
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_judged_by_key_name() {
        for key in [
            "s3_access_key",
            "s3_secret_key",
            "gs_secret_key",
            "azure_storage_account_key",
            "oss_accessid",
            "oss_accesskey",
            "smtp_password",
            "password",
            "boto_proxy_pass",
            "keysecret",
            "keyid",
            "bugsnag",
            "api_token",
            "SMTP_PASSWORD",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "privileged_key",
            "smtp_login",
            "s3_secure",
            "storage_path",
            "swift_authurl",
            "auth_htpasswd",
            "auth_token_realm",
            "auth_token_rootcertbundle",
            "tls_key",
        ] {
            assert!(!is_secret(key), "{key}");
        }
        assert!(is_secret_path("cache.password"));
        assert!(!is_secret_path("cache.host"));
    }

    #[test]
    fn mask_hides_set_secrets_at_every_depth() {
        let tree = yaml::parse(
            "s3_secret_key: abc\ns3_access_key: ~\ncache: {password: pw, host: h}\n\
             list: [{token: t}]\ncloudfront: {keysecret: {a: 1}}",
        )
        .unwrap();
        let m = mask(&tree);
        assert_eq!(m["s3_secret_key"], Value::String(MASK.into()));
        assert_eq!(m["s3_access_key"], Value::Null);
        assert_eq!(m["cache"]["password"], Value::String(MASK.into()));
        assert_eq!(m["cache"]["host"], Value::String("h".into()));
        assert_eq!(m["list"][0]["token"], Value::String(MASK.into()));
        assert_eq!(m["cloudfront"]["keysecret"], Value::String(MASK.into()));
        let hooks = yaml::parse(
            "notifications: {endpoints: [{name: ci, url: 'https://h.example.com/T0/B0/k3y', \
             headers: {Authorization: [Bearer t0k], X-A: v}}]}",
        )
        .unwrap();
        let m = mask(&hooks);
        let headers = &m["notifications"]["endpoints"][0]["headers"];
        assert_eq!(headers["Authorization"][0], Value::String(MASK.into()));
        assert_eq!(headers["X-A"], Value::String(MASK.into()));
        assert_eq!(
            m["notifications"]["endpoints"][0]["name"],
            Value::String("ci".into())
        );
    }

    #[test]
    fn mask_hides_passwords_in_urls() {
        let tree = yaml::parse(concat!(
            "db: 'postgresql+psycopg2://reg:s3cret@db:5432/registry'\n",
            "opts: 'postgresql:///r?host=/run&password=s3cret'\n",
            "plain: 'sqlite:////var/lib/r.db'\n",
            "user_only: 'postgres://reg@db/r'\n",
        ))
        .unwrap();
        let m = mask(&tree);
        assert_eq!(
            m["db"],
            Value::String(format!("postgresql+psycopg2://reg:{MASK}@db:5432/registry"))
        );
        assert_eq!(
            m["opts"],
            Value::String(format!("postgresql:///r?host=/run&password={MASK}"))
        );
        assert_eq!(m["plain"], tree["plain"]);
        assert_eq!(m["user_only"], tree["user_only"]);
    }

    #[test]
    fn yaml_output_reads_back_as_the_same_values() {
        let text = "a: 'yes'\nb: yes\nc: '010'\nd: 1.5\ne: 1e300\nf: ~\ng: ''\nh: '1:30'\n\
                    i: [x, 'on', 3]\nj: {k: '~'}\nl: 18446744073709551615\nm: -.inf\n\
                    n: \"multi\\nline\"\no: ß∞\np: 1.0e+300\nq: '1_000'\n";
        let tree = yaml::parse(text).unwrap();
        let mut body = String::new();
        YamlEmitter::new(&mut body).dump(&to_yaml(&tree)).unwrap();
        let back = yaml::parse(&body).unwrap();
        // `1_000` is the one the emitter leaves plain; render falls back to JSON for it.
        let mut expected = tree.clone();
        expected["q"] = Value::Number(1000.into());
        assert_eq!(back, expected, "{body}");
    }

    #[test]
    fn floats_keep_a_dot() {
        assert_eq!(float_text(1e300).parse::<f64>().ok(), Some(1e300));
        assert!(float_text(1e300).ends_with(".0"));
        assert_eq!(float_text(0.01), "0.01");
        assert_eq!(float_text(f64::NEG_INFINITY), "-.inf");
    }
}
