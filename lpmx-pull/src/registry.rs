//! A client for one repository of a registry speaking the distribution API:
//! authentication, retries, and the two requests a pull needs.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};

use lpmx_core::ImageRef;

use crate::auth::{self, Challenge, Credentials, Secret};
use crate::error::PullError;

/// How failed requests are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Retries after the first try of a request that made no progress.
    pub retries: u32,
    /// First backoff; it doubles with each retry.
    pub backoff: Duration,
    /// Longest wait between tries, `Retry-After` included.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            backoff: Duration::from_millis(250),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    pub fn wait(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .backoff
            .saturating_mul(1 << failures.min(16))
            .min(Duration::from_secs(8));
        retry_after.unwrap_or(exponential).min(self.max_wait)
    }
}

/// The `Authorization` header in use, and a counter bumped whenever it
/// changes, so threads that all hit an expired token renew it once.
struct AuthState {
    header: Option<Secret>,
    expires: Option<Instant>,
    bearer: Option<Challenge>,
    generation: u64,
}

pub struct Registry {
    http: Client,
    base: String,
    registry: String,
    repository: String,
    retry: RetryPolicy,
    credentials: OnceLock<Option<Credentials>>,
    auth: Mutex<AuthState>,
}

/// Tokens without `expires_in` live 60 s (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Renew a token this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

impl Registry {
    pub fn new(
        image: &ImageRef,
        plain_http: bool,
        retry: RetryPolicy,
    ) -> Result<Registry, PullError> {
        let scheme = if plain_http || image.is_loopback() {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{}/v2/{}", image.api_host(), image.repository);
        let http = Client::builder()
            .user_agent(concat!("lpmx-pull/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|source| PullError::Connect {
                url: base.clone(),
                source,
            })?;
        Ok(Registry {
            http,
            base,
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            retry,
            credentials: OnceLock::new(),
            auth: Mutex::new(AuthState {
                header: None,
                expires: None,
                bearer: None,
                generation: 0,
            }),
        })
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    pub fn manifest_url(&self, reference: &str) -> String {
        format!("{}/manifests/{reference}", self.base)
    }

    pub fn blob_url(&self, digest: &lpmx_core::Digest) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    fn credentials(&self) -> Result<Option<&Credentials>, PullError> {
        if let Some(found) = self.credentials.get() {
            return Ok(found.as_ref());
        }
        let found = auth::find_credentials(&self.registry)?;
        Ok(self.credentials.get_or_init(|| found).as_ref())
    }

    /// GETs `url` with authentication, retrying connection errors, 429 and
    /// 5xx. Other statuses come back to the caller, 2xx or not.
    pub fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        range_from: Option<u64>,
    ) -> Result<Response, PullError> {
        let mut renewals = 0;
        loop {
            self.renew_if_expiring()?;
            let (header, generation) = {
                let state = self.auth.lock().expect("auth lock");
                (state.header.clone(), state.generation)
            };
            let response = self.send_with_retries(url, || {
                let mut request = self.http.get(url);
                if let Some(accept) = accept {
                    request = request.header(ACCEPT, accept);
                }
                if let Some(from) = range_from.filter(|from| *from > 0) {
                    request = request.header(RANGE, format!("bytes={from}-"));
                }
                if let Some(header) = &header {
                    let mut value = HeaderValue::from_str(header.expose())
                        .unwrap_or_else(|_| HeaderValue::from_static(""));
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                request
            })?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            renewals += 1;
            if renewals > 3 {
                return Err(self.refused());
            }
            self.authenticate(&response, generation)?;
        }
    }

    fn refused(&self) -> PullError {
        match self.credentials() {
            Ok(Some(credentials)) => PullError::CredentialsRefused {
                registry: self.registry.clone(),
                source_name: credentials.source.clone(),
            },
            Ok(None) => PullError::NoCredentials {
                registry: self.registry.clone(),
                looked_in: looked_in(),
            },
            Err(e) => e,
        }
    }

    /// Sends what `build` makes until it gets an answer worth returning.
    fn send_with_retries(
        &self,
        url: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, PullError> {
        let mut failures = 0;
        loop {
            let retry_after = match build().send() {
                Err(source) => {
                    if failures >= self.retry.retries {
                        return Err(PullError::Connect {
                            url: url.to_owned(),
                            source: source.without_url(),
                        });
                    }
                    None
                }
                Ok(response) => {
                    let status = response.status();
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                        || failures >= self.retry.retries
                    {
                        return Ok(response);
                    }
                    retry_after(&response)
                }
            };
            std::thread::sleep(self.retry.wait(failures, retry_after));
            failures += 1;
        }
    }

    /// Answers a 401: sets up Basic credentials or fetches a bearer token,
    /// unless another thread already did since `generation`.
    fn authenticate(&self, response: &Response, generation: u64) -> Result<(), PullError> {
        let mut state = self.auth.lock().expect("auth lock");
        if state.generation != generation {
            return Ok(());
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(Challenge::parse)
            // Prefer Bearer when both are offered.
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
        match challenge {
            Some(Challenge::Basic) => {
                let Some(credentials) = self.credentials()? else {
                    return Err(PullError::NoCredentials {
                        registry: self.registry.clone(),
                        looked_in: looked_in(),
                    });
                };
                if state.header.is_some() {
                    return Err(PullError::CredentialsRefused {
                        registry: self.registry.clone(),
                        source_name: credentials.source.clone(),
                    });
                }
                state.header = Some(basic_header(credentials));
                state.expires = None;
            }
            Some(bearer @ Challenge::Bearer { .. }) => {
                let (token, expires) = self.fetch_token(&bearer)?;
                state.header = Some(token);
                state.expires = Some(expires);
                state.bearer = Some(bearer);
            }
            None => {
                return Err(PullError::Status {
                    url: response.url().to_string(),
                    status: response.status(),
                    detail: " (no authentication scheme this client knows was offered)".to_owned(),
                });
            }
        }
        state.generation += 1;
        Ok(())
    }

    /// Renews a bearer token before it expires, so long pulls keep going.
    fn renew_if_expiring(&self) -> Result<(), PullError> {
        let mut state = self.auth.lock().expect("auth lock");
        let (Some(expires), Some(bearer)) = (state.expires, state.bearer.clone()) else {
            return Ok(());
        };
        if Instant::now() + TOKEN_MARGIN < expires {
            return Ok(());
        }
        let (token, expires) = self.fetch_token(&bearer)?;
        state.header = Some(token);
        state.expires = Some(expires);
        state.generation += 1;
        Ok(())
    }

    fn fetch_token(&self, challenge: &Challenge) -> Result<(Secret, Instant), PullError> {
        let Challenge::Bearer {
            realm,
            service,
            scope,
        } = challenge
        else {
            unreachable!("fetch_token is given bearer challenges only");
        };
        let token_error = |why: &str| PullError::Token {
            realm: realm.clone(),
            why: why.to_owned(),
        };
        let url = reqwest::Url::parse(realm).map_err(|_| token_error("the realm is not a URL"))?;
        let scope = scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let credentials = self.credentials()?;
        let started = Instant::now();
        let response = self.send_with_retries(url.as_str(), || {
            let mut query: Vec<(&str, &str)> = vec![("scope", &scope)];
            if let Some(service) = service {
                query.push(("service", service));
            }
            let mut request = self.http.get(url.clone()).query(&query);
            if let Some(credentials) = credentials {
                let mut value = HeaderValue::from_str(basic_header(credentials).expose())
                    .unwrap_or_else(|_| HeaderValue::from_static(""));
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            request
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(match credentials {
                Some(credentials) => PullError::CredentialsRefused {
                    registry: self.registry.clone(),
                    source_name: credentials.source.clone(),
                },
                None => PullError::AccessDenied {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    why: format!("the token service answered {status}"),
                },
            });
        }
        if !status.is_success() {
            return Err(token_error(&format!("it answered {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = response
            .bytes()
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .ok_or_else(|| token_error("its answer is not the expected JSON"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("the answer holds no token"))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((Secret::new(format!("Bearer {token}")), started + lifetime))
    }

    /// Turns a non-success response into an error naming the URL and what
    /// the registry said (its error codes never contain credentials).
    pub fn status_error(&self, response: Response) -> PullError {
        let url = response.url().to_string();
        let status = response.status();
        if status == StatusCode::FORBIDDEN {
            return PullError::AccessDenied {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                why: format!("{status}"),
            };
        }
        let body = response.text().unwrap_or_default();
        let detail = registry_error_text(&body)
            .map(|text| format!(" ({text})"))
            .unwrap_or_default();
        PullError::Status {
            url,
            status,
            detail,
        }
    }
}

fn basic_header(credentials: &Credentials) -> Secret {
    Secret::new(format!(
        "Basic {}",
        BASE64.encode(format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose()
        ))
    ))
}

fn looked_in() -> String {
    let files: Vec<String> = auth::credential_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if files.is_empty() {
        "no credentials file: set REGISTRY_AUTH_FILE or HOME".to_owned()
    } else {
        files.join(", ")
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The distribution API's `{"errors":[{"code":..,"message":..}]}` as text.
fn registry_error_text(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let errors = value.get("errors")?.as_array()?;
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            format!("{code}: {message}")
                .trim_matches([' ', ':'])
                .chars()
                .take(200)
                .collect()
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after_up_to_the_cap() {
        let policy = RetryPolicy {
            retries: 3,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
        };
        assert_eq!(policy.wait(0, None), Duration::from_millis(100));
        assert_eq!(policy.wait(2, None), Duration::from_millis(400));
        assert_eq!(
            policy.wait(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.wait(0, Some(Duration::from_secs(100))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn registry_errors_are_summarised() {
        assert_eq!(
            registry_error_text(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error_text("<html>"), None);
    }
}
