//! The request behind an activity (see [`crate::events::Activity`]): who
//! sent it, from where, to which host, and who they logged in as, for both
//! APIs' notifications.

use actix_web::{HttpMessage, HttpRequest};

use crate::events::RequestInfo;

/// Who the auth gate let in: the user of a password, the subject of a
/// token. Left in the request's extensions by each API's gate.
#[derive(Debug, Clone)]
pub struct Actor(pub Option<String>);

/// One id for every activity of one request.
#[derive(Debug, Clone)]
struct RequestId(String);

/// What an activity says of `req`.
pub fn request(req: &HttpRequest) -> RequestInfo {
    let id = {
        let mut extensions = req.extensions_mut();
        match extensions.get::<RequestId>() {
            Some(id) => id.0.clone(),
            None => {
                let id = crate::notifications::envelope::new_id();
                extensions.insert(RequestId(id.clone()));
                id
            }
        }
    };
    let text = |name: actix_web::http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect::<String>()
    };
    RequestInfo {
        id,
        addr: req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        host: req.connection_info().host().chars().take(256).collect(),
        method: req.method().to_string(),
        user_agent: text(actix_web::http::header::USER_AGENT),
        actor: req.extensions().get::<Actor>().and_then(|a| a.0.clone()),
    }
}

/// The address of `path` on this registry, as the client reached it.
pub fn url(req: &HttpRequest, path: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}{path}", info.scheme(), info.host())
}
