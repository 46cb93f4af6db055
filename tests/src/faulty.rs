//! A registry that misbehaves on demand: bearer tokens that expire, 500s,
//! 429 with `Retry-After`, bodies cut short, corrupt bytes, slow bodies.
//! What a real registry will not do when asked. It logs every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::image::Blob;
use crate::registry::Target;

/// What the server does wrong. Counters count down as faults are served.
#[derive(Default, Debug, Clone)]
pub struct Faults {
    /// Demand bearer tokens; each token is good for this many requests.
    pub bearer_token_uses: Option<usize>,
    /// The `expires_in` the token endpoint announces.
    pub token_expires_in: Option<u64>,
    /// Answer this many requests (any path but the token's) with 500.
    pub server_errors: usize,
    /// Answer this many requests with 429 and this `Retry-After` (seconds).
    pub too_many_requests: usize,
    pub retry_after_seconds: u64,
    /// Cut these blob bodies after this many bytes, this many times.
    pub truncate: HashMap<String, (usize, usize)>,
    /// Serve these blobs with one byte flipped.
    pub corrupt: Vec<String>,
    /// Blob bodies go out at this many bytes per second.
    pub bytes_per_second: Option<usize>,
    /// Drop the connection before any response, this many times.
    pub drop_connections: usize,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes actually sent.
    pub sent: usize,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Blob>,
    manifests: HashMap<String, Blob>,
    faults: Faults,
    tokens: HashMap<String, usize>,
    issued: usize,
    log: Vec<Request>,
}

pub struct FaultyRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    /// Connections accepted and not yet logged.
    active: Arc<AtomicUsize>,
}

impl Default for FaultyRegistry {
    fn default() -> Self {
        FaultyRegistry::start()
    }
}

impl FaultyRegistry {
    pub fn start() -> FaultyRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let (thread_state, thread_stop, thread_active) =
            (state.clone(), stop.clone(), active.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                let active = thread_active.clone();
                active.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = serve(stream, port, &state);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FaultyRegistry {
            port,
            state,
            stop,
            active,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().expect("state").faults = faults;
    }

    /// Every request served so far. Waits (up to 10 s) for requests still
    /// being answered, which a client may have finished reading already.
    pub fn log(&self) -> Vec<Request> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.state.lock().expect("state").log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().expect("state").log.clear();
    }

    /// Requests for blob `digest` (as `sha256:...`).
    /// How many times blob `digest` was sent whole (status 200).
    pub fn full_downloads(&self, digest: &str) -> usize {
        self.blob_requests(digest)
            .iter()
            .filter(|r| r.status == 200)
            .count()
    }

    pub fn blob_requests(&self, digest: &str) -> Vec<Request> {
        let suffix = format!("/blobs/{digest}");
        self.log()
            .into_iter()
            .filter(|r| r.path.ends_with(&suffix))
            .collect()
    }
}

impl Drop for FaultyRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Target for FaultyRegistry {
    fn put_blob(&self, _repository: &str, blob: &Blob) {
        let mut state = self.state.lock().expect("state");
        state.blobs.insert(blob.digest.to_string(), blob.clone());
    }

    fn put_manifest(&self, _repository: &str, reference: &str, manifest: &Blob) {
        let mut state = self.state.lock().expect("state");
        state
            .manifests
            .insert(manifest.digest.to_string(), manifest.clone());
        state
            .manifests
            .insert(reference.to_owned(), manifest.clone());
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then hang up.
    cut_at: Option<usize>,
    throttle: Option<usize>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_at: None,
            throttle: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

fn serve(stream: TcpStream, port: u16, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
        }
    }
    let (response, dropped) = {
        let mut state = state.lock().expect("state");
        if state.faults.drop_connections > 0 && !path.starts_with("/token") {
            state.faults.drop_connections -= 1;
            (Response::new(0, ""), true)
        } else {
            (respond(&mut state, port, &path, &headers), false)
        }
    };
    let mut stream = stream;
    if dropped {
        state.lock().expect("state").log.push(Request {
            path,
            range: headers.get("range").cloned(),
            authorization: headers.get("authorization").cloned(),
            status: 0,
            sent: 0,
        });
        return stream.shutdown(Shutdown::Both);
    }
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let limit = response
        .cut_at
        .unwrap_or(response.body.len())
        .min(response.body.len());
    let mut sent = 0;
    let chunk = response.throttle.map_or(1 << 16, |rate| (rate / 20).max(1));
    let mut result = Ok(());
    while sent < limit {
        let end = (sent + chunk).min(limit);
        if let Err(e) = stream.write_all(&response.body[sent..end]) {
            result = Err(e);
            break;
        }
        sent = end;
        if response.throttle.is_some() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    state.lock().expect("state").log.push(Request {
        path,
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
        status: response.status,
        sent,
    });
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
    result
}

fn respond(
    state: &mut State,
    port: u16,
    path: &str,
    headers: &HashMap<String, String>,
) -> Response {
    if let Some(query) = path.strip_prefix("/token?") {
        if !query.contains("scope=repository") || !query.contains("service=faulty") {
            return Response::new(400, "token request without scope or service");
        }
        state.issued += 1;
        let token = format!("token-{}", state.issued);
        let uses = state.faults.bearer_token_uses.unwrap_or(usize::MAX);
        state.tokens.insert(token.clone(), uses);
        let mut body = serde_json::json!({"token": token});
        if let Some(expires_in) = state.faults.token_expires_in {
            body["expires_in"] = expires_in.into();
        }
        return Response::new(200, body.to_string()).header("content-type", "application/json");
    }
    if state.faults.server_errors > 0 {
        state.faults.server_errors -= 1;
        return Response::new(500, "injected server error");
    }
    if state.faults.too_many_requests > 0 {
        state.faults.too_many_requests -= 1;
        return Response::new(429, "slow down")
            .header("retry-after", state.faults.retry_after_seconds.to_string());
    }
    if state.faults.bearer_token_uses.is_some() {
        let token = headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_owned);
        let valid = match token.as_ref().and_then(|t| state.tokens.get_mut(t)) {
            Some(uses) if *uses > 0 => {
                *uses -= 1;
                true
            }
            _ => false,
        };
        if !valid {
            let repository = path
                .strip_prefix("/v2/")
                .and_then(|p| p.split("/manifests/").next())
                .and_then(|p| p.split("/blobs/").next())
                .unwrap_or("");
            return Response::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://127.0.0.1:{port}/token",service="faulty",scope="repository:{repository}:pull""#
                ),
            );
        }
    }
    if path == "/v2/" {
        return Response::new(200, "{}");
    }
    if let Some((_, reference)) = path.split_once("/manifests/") {
        return match state.manifests.get(reference) {
            Some(blob) => Response::new(200, blob.bytes.clone())
                .header("content-type", &blob.media_type)
                .header("docker-content-digest", blob.digest.to_string()),
            None => Response::new(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        };
    }
    if let Some((_, digest)) = path.split_once("/blobs/") {
        let Some(blob) = state.blobs.get(digest) else {
            return Response::new(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            );
        };
        let mut body = blob.bytes.clone();
        if state.faults.corrupt.iter().any(|d| d == digest) {
            let middle = body.len() / 2;
            body[middle] ^= 0xff;
        }
        let start = headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<usize>().ok());
        let total = body.len();
        let mut response = match start {
            Some(start) if start < total => Response::new(206, body[start..].to_vec()).header(
                "content-range",
                format!("bytes {start}-{}/{total}", total - 1),
            ),
            Some(_) => return Response::new(416, ""),
            None => Response::new(200, body),
        };
        if let Some((cut_at, times)) = state.faults.truncate.get_mut(digest)
            && *times > 0
        {
            *times -= 1;
            response.cut_at = Some(*cut_at);
        }
        response.throttle = state.faults.bytes_per_second;
        return response;
    }
    Response::new(404, "not found")
}
