//! Debian's `docker-registry` on a free loopback port, with its own config
//! and storage, optionally behind htpasswd Basic auth.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::image::{Blob, Image};

/// Something images can be pushed to.
pub trait Target {
    fn put_blob(&self, repository: &str, blob: &Blob);
    fn put_manifest(&self, repository: &str, reference: &str, manifest: &Blob);

    fn push_image(&self, repository: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.put_blob(repository, blob);
        }
        self.put_manifest(repository, tag, &image.manifest);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub struct LocalRegistry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    http: reqwest::blocking::Client,
    dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        LocalRegistry::launch(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_basic_auth(user: &str, password: &str) -> LocalRegistry {
        LocalRegistry::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> LocalRegistry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) must be installed");
            assert!(output.status.success(), "htpasswd failed");
            fs::write(&htpasswd, output.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: lpmx-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&config_path);
        // SAFETY: prctl is async-signal-safe; it makes the registry die with
        // the process (or test thread) that started it, even on a crash.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry must be installed (Debian package docker-registry)");
        let registry = LocalRegistry {
            child,
            port,
            credentials,
            http: reqwest::blocking::Client::new(),
            dir,
        };
        registry.wait_until_up();
        registry
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.http.get(self.url("/v2/")).send().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not come up: {}",
            fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    /// Waits until the registry exits (it runs until killed).
    pub fn wait(mut self) {
        let _ = self.child.wait();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            return path.to_owned();
        }
        format!("http://{}{path}", self.host())
    }

    fn authorize(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}

impl Target for LocalRegistry {
    fn put_blob(&self, repository: &str, blob: &Blob) {
        let response = self
            .authorize(
                self.http
                    .post(self.url(&format!("/v2/{repository}/blobs/uploads/"))),
            )
            .send()
            .expect("start upload");
        assert_eq!(
            response.status().as_u16(),
            202,
            "start upload: {response:?}"
        );
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .authorize(
                self.http
                    .put(self.url(&format!("{location}{separator}digest={}", blob.digest)))
                    .header("content-type", "application/octet-stream")
                    .body(blob.bytes.clone()),
            )
            .send()
            .expect("upload blob");
        assert_eq!(response.status().as_u16(), 201, "upload blob: {response:?}");
    }

    fn put_manifest(&self, repository: &str, reference: &str, manifest: &Blob) {
        let response = self
            .authorize(
                self.http
                    .put(self.url(&format!("/v2/{repository}/manifests/{reference}")))
                    .header("content-type", &manifest.media_type)
                    .body(manifest.bytes.clone()),
            )
            .send()
            .expect("put manifest");
        let status = response.status().as_u16();
        assert_eq!(
            status,
            201,
            "put manifest: {}",
            response.text().unwrap_or_default()
        );
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A docker `config.json` giving `user`/`password` for `registry`.
pub fn docker_config(registry: &str, user: &str, password: &str) -> String {
    let auth = BASE64.encode(format!("{user}:{password}"));
    serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string()
}
