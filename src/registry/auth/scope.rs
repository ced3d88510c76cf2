//! Which actions a request needs, in the terms of docker's token
//! specification (`repository:<name>:pull`, `registry:catalog:*`), for
//! both APIs: GET and HEAD pull, PUT, POST and PATCH push, DELETE deletes;
//! a mount (`POST ...?mount=&from=`) also pulls from its source.

use actix_web::http::Method;

use super::Target;
use crate::registry::oci::Name;

/// One resource and the actions a request needs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// `registry:catalog:search`: `/v1/search`, as docker asks for it.
    Search,
    /// `registry:catalog:*`: `/v2/_catalog`, as distribution asks for it.
    All,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Search => "search",
            Action::All => "*",
        }
    }

    /// Whether a token granting `granted` allows this action.
    pub fn granted_by(self, granted: &str) -> bool {
        granted == "*" || granted == self.as_str()
    }
}

/// What the request needs, and whether it writes (a push or a delete:
/// what `auth_required: write` asks a login for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub scopes: Vec<Scope>,
    /// The request changes something.
    pub writes: bool,
    /// `GET /v2/`: where clients check credentials (`docker login`), so a
    /// login is asked even where pulls are anonymous.
    pub login_check: bool,
    /// A v1 image route: no repository in the URL, so a token must grant
    /// the action on a repository the image belongs to (the v1 gate looks
    /// that up).
    pub any_repository: Option<Action>,
}

impl Needs {
    /// The `scope` parameter of a challenge: each resource once, with the
    /// actions a client should ask for (a push asks `pull,push`, as docker
    /// and distribution do: the push's own HEADs pull).
    pub fn challenge_scope(&self) -> Option<String> {
        let mut parts: Vec<(String, Vec<&'static str>)> = Vec::new();
        for scope in &self.scopes {
            let resource = format!("{}:{}", scope.kind, scope.name);
            let actions: Vec<&'static str> = match scope.action {
                Action::Push => vec!["pull", "push"],
                other => vec![other.as_str()],
            };
            match parts.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, have)) => {
                    for a in actions {
                        if !have.contains(&a) {
                            have.push(a);
                        }
                    }
                }
                None => parts.push((resource, actions)),
            }
        }
        (!parts.is_empty()).then(|| {
            parts
                .iter()
                .map(|(r, a)| format!("{r}:{}", a.join(",")))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

fn action_of(method: &Method) -> Action {
    match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        // PUT, POST, PATCH, and anything else that might change state.
        _ => Action::Push,
    }
}

/// What `method` with `query` on `target` needs.
pub fn needs(method: &Method, query: &str, target: Target<'_>) -> Needs {
    let action = action_of(method);
    let writes = action != Action::Pull;
    let mut needs = Needs {
        scopes: Vec::new(),
        writes,
        login_check: false,
        any_repository: None,
    };
    let repository = |name: String, action| Scope {
        kind: "repository",
        name,
        action,
    };
    match target {
        Target::Repository(name) => needs.scopes.push(repository(name.to_string(), action)),
        Target::Named { name, .. } => {
            needs.scopes.push(repository(name.to_owned(), action));
            if *method == Method::POST {
                if let Some(from) = mount_source(query) {
                    if from != name {
                        needs.scopes.push(repository(from, Action::Pull));
                    }
                }
            }
        }
        Target::Unnamed => needs.any_repository = Some(action),
        Target::Base => needs.login_check = true,
        Target::Catalog => needs.scopes.push(Scope {
            kind: "registry",
            name: "catalog".into(),
            action: Action::All,
        }),
        Target::Search => needs.scopes.push(Scope {
            kind: "registry",
            name: "catalog".into(),
            action: Action::Search,
        }),
    }
    needs
}

/// The `from` of a mount, when it names a repository (otherwise the
/// mount falls back to a plain upload and reads nothing).
fn mount_source(query: &str) -> Option<String> {
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query).ok()?;
    if !pairs.iter().any(|(k, _)| k == "mount") {
        return None;
    }
    let from = pairs.iter().find(|(k, _)| k == "from")?;
    Name::parse(&from.1).ok().map(|n| n.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepositoryName;

    fn named<'a>(name: &'a str, repository: &'a RepositoryName) -> Target<'a> {
        Target::Named { name, repository }
    }

    #[test]
    fn methods_map_to_actions() {
        let repo = RepositoryName::parse("team/app").unwrap();
        let cases = [
            (Method::GET, "repository:team/app:pull", false),
            (Method::HEAD, "repository:team/app:pull", false),
            (Method::PUT, "repository:team/app:pull,push", true),
            (Method::PATCH, "repository:team/app:pull,push", true),
            (Method::POST, "repository:team/app:pull,push", true),
            (Method::DELETE, "repository:team/app:delete", true),
        ];
        for (method, scope, writes) in cases {
            let n = needs(&method, "", named("team/app", &repo));
            assert_eq!(n.challenge_scope().as_deref(), Some(scope), "{method}");
            assert_eq!(n.writes, writes, "{method}");
        }
        // v1 names the repository with its namespace.
        let lib = RepositoryName::parse("app").unwrap();
        let n = needs(&Method::GET, "", Target::Repository(&lib));
        assert_eq!(n.scopes[0].name, "library/app");
    }

    #[test]
    fn a_mount_pulls_from_its_source() {
        let repo = RepositoryName::parse("team/app").unwrap();
        let n = needs(
            &Method::POST,
            "mount=sha256:00&from=other/base",
            named("team/app", &repo),
        );
        assert_eq!(
            n.challenge_scope().as_deref(),
            Some("repository:team/app:pull,push repository:other/base:pull")
        );
        assert_eq!(n.scopes[1].action, Action::Pull);
        // No mount, or a `from` that names nothing: no source.
        for query in ["from=other/base", "mount=sha256:00&from=Bad..Name", ""] {
            let n = needs(&Method::POST, query, named("team/app", &repo));
            assert_eq!(n.scopes.len(), 1, "{query}");
        }
    }

    #[test]
    fn registry_routes() {
        let catalog = needs(&Method::GET, "n=10", Target::Catalog);
        assert_eq!(
            catalog.challenge_scope().as_deref(),
            Some("registry:catalog:*")
        );
        let search = needs(&Method::GET, "q=x", Target::Search);
        assert_eq!(
            search.challenge_scope().as_deref(),
            Some("registry:catalog:search")
        );
        let base = needs(&Method::GET, "", Target::Base);
        assert!(base.login_check && base.challenge_scope().is_none());
        let image = needs(&Method::PUT, "", Target::Unnamed);
        assert_eq!(image.any_repository, Some(Action::Push));
    }

    #[test]
    fn wildcards_grant_every_action() {
        assert!(Action::Push.granted_by("*"));
        assert!(Action::All.granted_by("*"));
        assert!(!Action::All.granted_by("search"));
        assert!(Action::Search.granted_by("search"));
        assert!(!Action::Push.granted_by("pull"));
    }
}
