//! Registry credentials and the token flow.
//!
//! Credentials come from `$REGISTRY_AUTH_FILE`, then
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): an
//! `auths` entry with base64 `auth` (or `username`/`password`), else the
//! registry's `credHelpers` helper, else the `credsStore` helper. Secrets are
//! held in [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use lpmx_core::reference::DOCKER_HUB;

/// A password or token: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// Where they came from, for messages: a file or a helper's name.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "credentials for {registry} in {path} are malformed (auth must be base64 of user:password)"
    )]
    Malformed { registry: String, path: PathBuf },
    #[error("credential helper docker-credential-{helper} for {registry} failed: {why}")]
    Helper {
        helper: String,
        registry: String,
        why: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credential files consulted, in order.
pub fn credential_files() -> Vec<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut files = Vec::new();
    if let Some(file) = var("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = var("DOCKER_CONFIG") {
        files.push(Path::new(&dir).join("config.json"));
    } else if let Some(home) = var("HOME") {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// `https://index.docker.io/v1/` and `registry-1.docker.io` are Docker Hub;
/// a scheme or path around a host is ignored.
fn normalise_registry_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// The name a credential helper knows a registry by.
fn helper_server_url(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// Finds credentials for `registry` (as in an image reference: `docker.io`,
/// `localhost:5000`), or `None` to go anonymous.
pub fn find_credentials(registry: &str) -> Result<Option<Credentials>, CredentialError> {
    for path in credential_files() {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CredentialError::Read { path, source }),
        };
        let file: AuthFile =
            serde_json::from_str(&text).map_err(|source| CredentialError::Json {
                path: path.clone(),
                source,
            })?;
        for (key, entry) in &file.auths {
            if normalise_registry_key(key) != registry {
                continue;
            }
            if let Some(credentials) = entry_credentials(entry, registry, &path)? {
                return Ok(Some(credentials));
            }
        }
        let helper = file
            .cred_helpers
            .iter()
            .find(|(key, _)| normalise_registry_key(key) == registry)
            .map(|(_, helper)| (helper, true))
            .or(file.creds_store.as_ref().map(|helper| (helper, false)));
        if let Some((helper, explicit)) = helper {
            match run_helper(helper, registry) {
                Ok(Some(credentials)) => return Ok(Some(credentials)),
                Ok(None) => {}
                // A catch-all store that is not installed here (a config
                // copied from a desktop) must not stop an anonymous pull.
                Err(HelperFailure::Missing) if !explicit => {}
                Err(HelperFailure::Missing) => {
                    return Err(CredentialError::Helper {
                        helper: helper.clone(),
                        registry: registry.to_owned(),
                        why: "not found on PATH".to_owned(),
                    });
                }
                Err(HelperFailure::Failed(why)) => {
                    return Err(CredentialError::Helper {
                        helper: helper.clone(),
                        registry: registry.to_owned(),
                        why,
                    });
                }
            }
        }
    }
    Ok(None)
}

fn entry_credentials(
    entry: &AuthEntry,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, CredentialError> {
    let malformed = || CredentialError::Malformed {
        registry: registry.to_owned(),
        path: path.to_owned(),
    };
    let source = path.display().to_string();
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = BASE64.decode(auth.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: Secret::new(password),
            source,
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.clone(),
            password: Secret::new(password.clone()),
            source,
        })),
        _ => Ok(None),
    }
}

enum HelperFailure {
    Missing,
    Failed(String),
}

/// Runs `docker-credential-<helper> get` as Docker does.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, HelperFailure> {
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HelperFailure::Missing),
        Err(e) => return Err(HelperFailure::Failed(e.to_string())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(helper_server_url(registry).as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| HelperFailure::Failed(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_lowercase()
            + &String::from_utf8_lossy(&output.stderr).to_lowercase();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(HelperFailure::Failed(format!(
            "it exited with {}",
            output.status
        )));
    }
    #[derive(Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| HelperFailure::Failed("its answer is not the expected JSON".to_owned()))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: Secret::new(answer.secret),
        source: program,
    }))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="...",service="...",scope="..."` or `Basic ...`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas.
fn parse_params(mut rest: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some(eq) = rest.find('=') else {
            return params;
        };
        let key = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            out.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_owned(),
                service: Some("registry.docker.io".to_owned()),
                scope: Some("repository:library/debian:pull,push".to_owned()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn registry_keys_normalise_docker_hub_and_urls() {
        assert_eq!(
            normalise_registry_key("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalise_registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalise_registry_key("http://localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(
            helper_server_url("docker.io"),
            "https://index.docker.io/v1/"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials {
            username: "u".to_owned(),
            password: Secret::new("hunter2"),
            source: "f".to_owned(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
