//! What an endpoint receives, field for field as distribution sends it: a
//! POST of `application/vnd.docker.distribution.events.v1+json`, the body
//! `{"events": [<event>, ...]}`, so that consumers written for
//! distribution read ours unchanged.

use serde::{Deserialize, Serialize};

use crate::events::{Activity, Reference};

/// The `Content-Type` of an envelope.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// One event as it is queued and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across retries: a consumer drops the ones it has seen.
    pub id: String,
    /// RFC 3339, nanoseconds, UTC.
    pub timestamp: String,
    pub action: String,
    pub target: Target,
    pub request: Request,
    pub actor: Actor,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The size again: distribution's older field, which consumers read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

/// `{}` when anonymous, as distribution leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `<hostname>:<port>` of the instance that saw the request.
    pub addr: String,
    /// Random, new at each start of the process.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

impl Event {
    /// The event of `activity`, seen by instance `source`.
    pub fn of(activity: &Activity, source: Source, include_references: bool) -> Event {
        let target = &activity.target;
        let request = &activity.request;
        let reference = |r: &Reference| Descriptor {
            media_type: r.media_type.clone(),
            size: r.size,
            digest: r.digest.to_string(),
        };
        Event {
            id: new_id(),
            timestamp: jiff::Timestamp::now().to_string(),
            action: activity.action.as_str().to_owned(),
            target: Target {
                media_type: target.media_type.clone(),
                size: target.size,
                digest: target.digest.as_ref().map(|d| d.to_string()),
                length: target.size,
                repository: target.repository.clone(),
                from_repository: target.from_repository.clone(),
                url: target.url.clone(),
                tag: target.tag.clone(),
                references: if include_references {
                    target.references.iter().map(reference).collect()
                } else {
                    Vec::new()
                },
            },
            request: Request {
                id: request.id.clone(),
                addr: request.addr.clone(),
                host: request.host.clone(),
                method: request.method.clone(),
                useragent: request.user_agent.clone(),
            },
            actor: Actor {
                name: request.actor.clone(),
            },
            source,
        }
    }
}

/// A random UUID (version 4) in its usual text form, as distribution's ids
/// are.
pub fn new_id() -> String {
    use rand::Rng;
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The body of one POST: the events (each a queued file's bytes, already
/// JSON) in an envelope.
pub fn envelope(events: &[bytes::Bytes]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Action, RequestInfo};
    use crate::names::digest::Digest;

    #[test]
    fn an_event_reads_as_distribution_writes_it() {
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let activity = Activity {
            action: Action::Push,
            target: crate::events::Target {
                repository: "ns/app".into(),
                digest: Some(digest.clone()),
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                size: Some(42),
                url: Some("http://r:5000/v2/ns/app/manifests/x".into()),
                tag: Some("v1".into()),
                from_repository: None,
                references: vec![Reference {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    digest: digest.clone(),
                    size: 7,
                }],
            },
            request: RequestInfo {
                id: "r1".into(),
                addr: "127.0.0.1:4000".into(),
                host: "r:5000".into(),
                method: "PUT".into(),
                user_agent: "skopeo".into(),
                actor: None,
            },
        };
        let source = Source {
            addr: "host:5000".into(),
            instance_id: "i".into(),
        };
        let event = Event::of(&activity, source, true);
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["action"], "push");
        assert_eq!(
            json["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(json["target"]["length"], 42);
        assert_eq!(json["target"]["references"][0]["size"], 7);
        assert_eq!(json["request"]["useragent"], "skopeo");
        assert_eq!(json["source"]["instanceID"], "i");
        assert_eq!(json["actor"], serde_json::json!({}));
        assert!(json["target"].get("fromRepository").is_none());
        assert!(jiff::Timestamp::from_str(json["timestamp"].as_str().unwrap()).is_ok());
        assert_eq!(event.id.len(), 36);

        let body = envelope(&[
            serde_json::to_vec(&event).unwrap().into(),
            serde_json::to_vec(&event).unwrap().into(),
        ]);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["events"].as_array().unwrap().len(), 2);
    }

    use std::str::FromStr;
}
