//! lpmx-pull against a real registry (Debian's docker-registry) and a
//! fault-injecting one, run as an unprivileged user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use lpmx_core::Digest;
use lpmx_core::oci::Platform;
use lpmx_tests::faulty::{Faults, FaultyRegistry};
use lpmx_tests::image::{self, Format, Image, index, small_image};
use lpmx_tests::registry::{LocalRegistry, Target, docker_config};
use lpmx_tests::{Env, Run};

/// The platform that is not this host's, for multi-arch tests.
fn other_platform() -> &'static str {
    if Platform::host().architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    }
}

fn host_platform() -> String {
    Platform::host().to_string()
}

/// Checks the document describes `image` and every blob is in the store.
#[track_caller]
fn assert_pulled(env: &Env, run: &Run, image: &Image) -> serde_json::Value {
    run.success();
    let doc = run.json();
    assert_eq!(doc["kind"], "lpmx.image");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["manifest_digest"], image.manifest.digest.to_string());
    assert_eq!(doc["config_digest"], image.config.digest.to_string());
    assert_eq!(doc["platform"]["architecture"], image.platform.architecture);
    let layers = doc["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), image.layers.len());
    for ((layer, blob), diff_id) in layers.iter().zip(&image.layers).zip(&image.diff_ids) {
        assert_eq!(layer["digest"], blob.digest.to_string());
        assert_eq!(layer["diff_id"], diff_id.to_string());
        assert_eq!(layer["size"], blob.bytes.len());
        assert_eq!(layer["media_type"], blob.media_type);
        let path = Path::new(layer["path"].as_str().expect("path"));
        assert!(path.starts_with(env.store()), "{path:?} outside the store");
        assert_eq!(
            Digest::of(&fs::read(path).expect("layer blob")),
            blob.digest
        );
    }
    let config_path = doc["config_path"].as_str().expect("config path");
    assert_eq!(fs::read(config_path).expect("config"), image.config.bytes);
    doc
}

/// Blobs written as an unprivileged user are that user's, and nothing is
/// left in the store's tmp/.
#[track_caller]
fn assert_store_clean_and_owned(env: &Env) {
    let tmp: Vec<_> = fs::read_dir(env.store().join("tmp"))
        .expect("tmp")
        .collect();
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for name in env.blob_names() {
            let meta = fs::metadata(env.store().join("blobs/sha256").join(name)).expect("meta");
            assert_eq!(
                meta.uid(),
                lpmx_tests::env::TEST_UID,
                "blob not owned by the test user"
            );
        }
    }
}

#[test]
fn pulls_an_oci_image_from_a_real_registry_and_skips_what_it_has() {
    let registry = LocalRegistry::start();
    let image = small_image(Format::Oci, &host_platform(), 3);
    registry.push_image("team/app", "v1", &image);
    let env = Env::new();
    let reference = format!("{}/team/app:v1", registry.host());

    let run = env.run("lpmx-pull", [&reference]);
    let doc = assert_pulled(&env, &run, &image);
    assert_eq!(doc["reference"], reference);
    assert_eq!(doc["config"]["cmd"][0], "/bin/sh");
    assert!(
        run.stderr.contains("fetched"),
        "plain progress lines: {run:#?}"
    );
    assert_store_clean_and_owned(&env);

    // Again: nothing to download, the same document.
    let again = env.run("lpmx-pull", [&reference]);
    assert_eq!(assert_pulled(&env, &again, &image), doc);
    assert_eq!(
        again.stderr.matches("already present").count(),
        3,
        "{again:#?}"
    );

    // --quiet prints nothing on stderr.
    let quiet = env.run("lpmx-pull", ["--quiet", &reference]);
    quiet.success();
    assert_eq!(quiet.stderr, "");

    // By digest, as users copy it from a registry: library-less path.
    let pinned = format!("{}/team/app@{}", registry.host(), image.manifest.digest);
    assert_pulled(&env, &env.run("lpmx-pull", [&pinned]), &image);
}

#[test]
fn pulls_by_digest_offline_once_the_blobs_are_stored() {
    let registry = LocalRegistry::start();
    let image = small_image(Format::Docker, &host_platform(), 2);
    registry.push_image("x", "latest", &image);
    let env = Env::new();
    let pinned = format!("{}/x@{}", registry.host(), image.manifest.digest);
    assert_pulled(&env, &env.run("lpmx-pull", [&pinned]), &image);
    drop(registry);
    assert_pulled(&env, &env.run("lpmx-pull", [&pinned]), &image);
}

#[test]
fn multi_arch_indexes_pick_the_host_or_the_asked_platform() {
    let registry = LocalRegistry::start();
    let env = Env::new();
    for format in [Format::Docker, Format::Oci] {
        let native = small_image(format, &host_platform(), 2);
        let other = small_image(format, other_platform(), 1);
        for image in [&native, &other] {
            for blob in image.blobs() {
                registry.put_blob("multi", blob);
            }
            registry.put_manifest("multi", &image.manifest.digest.to_string(), &image.manifest);
        }
        let list = index(
            format,
            &[
                (&native.manifest, Some(&native.platform)),
                (&other.manifest, Some(&other.platform)),
            ],
        );
        registry.put_manifest("multi", "latest", &list);
        let reference = format!("{}/multi", registry.host());

        let doc = assert_pulled(&env, &env.run("lpmx-pull", [&reference]), &native);
        assert_eq!(doc["digest"], list.digest.to_string());
        assert_pulled(
            &env,
            &env.run("lpmx-pull", ["--platform", other_platform(), &reference]),
            &other,
        );
        env.run("lpmx-pull", ["--platform", "linux/s390x", &reference])
            .failure(66)
            .stderr_has("no image for platform linux/s390x")
            .stderr_has(&format!(
                "available: {}, {}",
                native.platform, other.platform
            ));
    }
}

#[test]
fn nested_indexes_are_followed() {
    let registry = LocalRegistry::start();
    let env = Env::new();
    let native = small_image(Format::Oci, &host_platform(), 1);
    for blob in native.blobs() {
        registry.put_blob("nested", blob);
    }
    registry.put_manifest(
        "nested",
        &native.manifest.digest.to_string(),
        &native.manifest,
    );
    let inner = index(Format::Oci, &[(&native.manifest, Some(&native.platform))]);
    registry.put_manifest("nested", &inner.digest.to_string(), &inner);
    let outer = index(Format::Oci, &[(&inner, Some(&native.platform))]);
    registry.put_manifest("nested", "v2", &outer);
    let run = env.run("lpmx-pull", [format!("{}/nested:v2", registry.host())]);
    assert_pulled(&env, &run, &native);
}

#[test]
fn single_platform_image_of_another_platform_is_refused() {
    let registry = LocalRegistry::start();
    let env = Env::new();
    let image = small_image(Format::Oci, other_platform(), 1);
    registry.push_image("foreign", "latest", &image);
    env.run("lpmx-pull", [format!("{}/foreign", registry.host())])
        .failure(66)
        .stderr_has(&format!("available: {}", image.platform));
    assert_pulled(
        &env,
        &env.run(
            "lpmx-pull",
            [
                "--platform",
                other_platform(),
                &format!("{}/foreign", registry.host()),
            ],
        ),
        &image,
    );
}

#[test]
fn basic_auth_with_docker_config_auth_file_and_credential_helper() {
    let registry = LocalRegistry::start_with_basic_auth("alice", "s3cret-pw");
    let image = small_image(Format::Oci, &host_platform(), 2);
    registry.push_image("private/app", "v1", &image);
    let reference = format!("{}/private/app:v1", registry.host());
    let never_shown = |run: &Run| {
        assert!(
            !run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"),
            "{run:#?}"
        );
    };

    // No credentials: a clear refusal.
    let env = Env::new();
    let run = env.run("lpmx-pull", [&reference]);
    run.failure(77).stderr_has("requires authentication");

    // ~/.docker/config.json
    env.write_file(
        &env.home().join(".docker/config.json"),
        docker_config(&registry.host(), "alice", "s3cret-pw"),
    );
    let run = env.run("lpmx-pull", [&reference]);
    assert_pulled(&env, &run, &image);
    never_shown(&run);

    // $REGISTRY_AUTH_FILE comes first: a wrong password there is refused.
    let auth_file = env.path().join("auth.json");
    env.write_file(
        &auth_file,
        docker_config(&format!("http://{}", registry.host()), "alice", "wrong"),
    );
    let other_store = Env::new();
    let run = Run::from(
        other_store
            .tool("lpmx-pull")
            .arg(&reference)
            .env("REGISTRY_AUTH_FILE", &auth_file)
            .output()
            .expect("run"),
    );
    run.failure(77).stderr_has("refused the credentials");
    never_shown(&run);
    assert!(!run.stderr.contains("wrong"), "{run:#?}");

    // A credential helper named by credHelpers.
    let helper_env = Env::new();
    let bin = helper_env.path().join("bin");
    let helper = bin.join("docker-credential-lpmxtest");
    helper_env.write_file(
        &helper,
        "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret-pw\"}' \"$server\"\n",
    );
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("chmod helper");
    helper_env.write_file(
        &helper_env.home().join(".docker/config.json"),
        serde_json::json!({"credHelpers": {registry.host(): "lpmxtest"}}).to_string(),
    );
    let run = Run::from(
        helper_env
            .tool("lpmx-pull")
            .arg(&reference)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("run"),
    );
    assert_pulled(&helper_env, &run, &image);
    never_shown(&run);

    // credsStore, the catch-all helper; and a catch-all helper that is not
    // installed is no reason to fail a pull that needs no credentials.
    let store_env = Env::new();
    store_env.write_file(
        &store_env.home().join(".docker/config.json"),
        serde_json::json!({"credsStore": "lpmxtest"}).to_string(),
    );
    let with_helper = |env: &Env, reference: &str| {
        Run::from(
            env.tool("lpmx-pull")
                .arg(reference)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .expect("run"),
        )
    };
    assert_pulled(&store_env, &with_helper(&store_env, &reference), &image);
    let public = LocalRegistry::start();
    public.push_image("open", "v1", &image);
    store_env.write_file(
        &store_env.home().join(".docker/config.json"),
        serde_json::json!({"credsStore": "not-installed"}).to_string(),
    );
    assert_pulled(
        &store_env,
        &with_helper(&store_env, &format!("{}/open:v1", public.host())),
        &image,
    );
}

#[test]
fn bearer_tokens_are_fetched_and_renewed_mid_pull() {
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Docker, &host_platform(), 4);
    registry.push_image("org/tool", "1.0", &image);
    // Every token is good for two requests: the pull needs several.
    registry.set_faults(Faults {
        bearer_token_uses: Some(2),
        token_expires_in: Some(300),
        ..Faults::default()
    });
    let env = Env::new();
    let run = env.run(
        "lpmx-pull",
        ["--jobs", "2", &format!("{}/org/tool:1.0", registry.host())],
    );
    assert_pulled(&env, &run, &image);
    let log = registry.log();
    let tokens = log.iter().filter(|r| r.path.starts_with("/token")).count();
    assert!(
        tokens >= 3,
        "expected renewals, got {tokens} token requests: {log:#?}"
    );
    assert!(
        log.iter().filter(|r| r.path.contains("/blobs/")).any(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer token-"))),
        "{log:#?}"
    );
    assert!(!run.stderr.contains("token-"), "a token leaked: {run:#?}");
}

#[test]
fn short_lived_tokens_are_renewed_before_they_expire() {
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Oci, &host_platform(), 2);
    registry.push_image("r", "t", &image);
    registry.set_faults(Faults {
        bearer_token_uses: Some(100),
        // Inside the renewal margin: every request renews first.
        token_expires_in: Some(1),
        ..Faults::default()
    });
    let env = Env::new();
    let run = env.run(
        "lpmx-pull",
        ["--jobs", "1", &format!("{}/r:t", registry.host())],
    );
    assert_pulled(&env, &run, &image);
    let log = registry.log();
    let unauthorized = log.iter().filter(|r| r.status == 401).count();
    assert_eq!(
        unauthorized, 1,
        "only the first request is challenged: {log:#?}"
    );
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Oci, &host_platform(), 2);
    registry.push_image("r", "t", &image);
    let reference = format!("{}/r:t", registry.host());

    registry.set_faults(Faults {
        server_errors: 3,
        ..Faults::default()
    });
    let env = Env::new();
    assert_pulled(
        &env,
        &env.run("lpmx-pull", ["--jobs", "1", &reference]),
        &image,
    );

    registry.set_faults(Faults {
        too_many_requests: 1,
        retry_after_seconds: 1,
        ..Faults::default()
    });
    let env = Env::new();
    let started = Instant::now();
    assert_pulled(&env, &env.run("lpmx-pull", [&reference]), &image);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );

    registry.set_faults(Faults {
        drop_connections: 2,
        ..Faults::default()
    });
    let env = Env::new();
    assert_pulled(&env, &env.run("lpmx-pull", [&reference]), &image);

    // Errors that outlast the retries fail clearly and store nothing.
    registry.set_faults(Faults {
        server_errors: 100,
        ..Faults::default()
    });
    let env = Env::new();
    env.run("lpmx-pull", ["--retries", "2", &reference])
        .failure(69)
        .stderr_has("500");
    assert!(env.blob_names().is_empty());
}

#[test]
fn truncated_bodies_resume_with_a_range_request() {
    let registry = FaultyRegistry::start();
    let tar = image::tar_of(&[("big.bin", &image::noise(7, 300_000))]);
    let image = Image::build(Format::Oci, &host_platform(), vec![tar]);
    registry.push_image("r", "t", &image);
    let layer = image.layers[0].digest.to_string();
    let mut faults = Faults::default();
    faults.truncate.insert(layer.clone(), (100_000, 2));
    registry.set_faults(faults);
    let env = Env::new();
    assert_pulled(
        &env,
        &env.run("lpmx-pull", [format!("{}/r:t", registry.host())]),
        &image,
    );
    let requests = registry.blob_requests(&layer);
    let ranges: Vec<_> = requests.iter().map(|r| r.range.clone()).collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=100000-".to_owned()),
            Some("bytes=200000-".to_owned())
        ],
        "{requests:#?}"
    );
    let sent: usize = requests.iter().map(|r| r.sent).sum();
    assert_eq!(sent, image.layers[0].bytes.len(), "bytes sent twice");
}

#[test]
fn a_corrupt_blob_is_refused_and_never_stored() {
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Oci, &host_platform(), 2);
    registry.push_image("r", "t", &image);
    let bad = image.layers[1].digest.to_string();
    registry.set_faults(Faults {
        corrupt: vec![bad.clone()],
        ..Faults::default()
    });
    let env = Env::new();
    env.run("lpmx-pull", [format!("{}/r:t", registry.host())])
        .failure(65)
        .stderr_has(&format!("blob {bad} does not match its digest"));
    assert!(
        !env.blob_names()
            .contains(&image.layers[1].digest.hex().to_owned())
    );
    assert_store_clean_and_owned(&env);

    // The next pull from a healthy server completes.
    registry.set_faults(Faults::default());
    assert_pulled(
        &env,
        &env.run("lpmx-pull", [format!("{}/r:t", registry.host())]),
        &image,
    );
}

#[test]
fn a_killed_pull_resumes_where_it_stopped() {
    let registry = FaultyRegistry::start();
    let size = 4_000_000;
    let tar = image::tar_of(&[("big.bin", &image::noise(11, size))]);
    let image = Image::build(Format::Oci, &host_platform(), vec![tar]);
    registry.push_image("r", "t", &image);
    let layer = &image.layers[0];
    registry.set_faults(Faults {
        bytes_per_second: Some(2_000_000),
        ..Faults::default()
    });
    let env = Env::new();
    let reference = format!("{}/r:t", registry.host());
    let mut child = env.spawn("lpmx-pull", [&reference]);
    let partial = env
        .store()
        .join(format!("tmp/{}.partial", layer.digest.hex()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::metadata(&partial).map_or(0, |m| m.len()) < 1_000_000 {
        assert!(Instant::now() < deadline, "the download never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let kept = fs::metadata(&partial).expect("partial kept").len();
    assert!(kept < layer.bytes.len() as u64);

    // The server notices the hang-up once its next write fails; start the
    // log afresh after that.
    while registry.blob_requests(&layer.digest.to_string()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the server never saw the hang-up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    registry.set_faults(Faults::default());
    registry.clear_log();
    let run = env.run("lpmx-pull", [&reference]);
    assert_pulled(&env, &run, &image);
    run.stderr_has("resumed at");
    let requests = registry.blob_requests(&layer.digest.to_string());
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let range = requests[0].range.as_deref().expect("a range request");
    let from: u64 = range["bytes=".len()..range.len() - 1]
        .parse()
        .expect("range start");
    assert!(
        from >= kept.min(1_000_000),
        "resumed from {from}, had {kept}"
    );
    assert_eq!(requests[0].sent as u64, layer.bytes.len() as u64 - from);
    assert_store_clean_and_owned(&env);
}

#[test]
fn concurrent_pulls_share_one_store_safely() {
    let registry = FaultyRegistry::start();
    let tars = (0..3)
        .map(|i| image::tar_of(&[("f.bin", &image::noise(i, 400_000))]))
        .collect();
    let image = Image::build(Format::Oci, &host_platform(), tars);
    registry.push_image("r", "t", &image);
    registry.set_faults(Faults {
        bytes_per_second: Some(4_000_000),
        ..Faults::default()
    });
    let env = Env::new();
    let reference = format!("{}/r:t", registry.host());
    let children: Vec<_> = (0..3)
        .map(|_| env.spawn("lpmx-pull", [&reference]))
        .collect();
    for child in children {
        let run = Run::from(child.wait_with_output().expect("wait"));
        assert_pulled(&env, &run, &image);
    }
    for layer in &image.layers {
        let full = registry.full_downloads(&layer.digest.to_string());
        assert_eq!(full, 1, "layer {} downloaded {full} times", layer.digest);
    }
    assert_store_clean_and_owned(&env);
}

#[test]
fn bad_arguments_and_missing_images_fail_clearly() {
    let env = Env::new();
    env.run("lpmx-pull", ["Not/A:Valid:Ref"])
        .failure(2)
        .stderr_has("invalid image reference");
    env.run("lpmx-pull", ["--platform", "linux", "debian"])
        .failure(2);
    env.run("lpmx-pull", Vec::<&str>::new()).failure(2);

    let registry = LocalRegistry::start();
    env.run("lpmx-pull", [format!("{}/nothing:here", registry.host())])
        .failure(66)
        .stderr_has("MANIFEST_UNKNOWN");

    let closed = lpmx_tests::registry::free_port();
    env.run(
        "lpmx-pull",
        ["--retries", "1", &format!("127.0.0.1:{closed}/x")],
    )
    .failure(69)
    .stderr_has("cannot reach");
    assert!(env.blob_names().is_empty());
}

#[test]
fn progress_bars_are_drawn_on_a_terminal() {
    let registry = FaultyRegistry::start();
    let tar = image::tar_of(&[("f.bin", &image::noise(3, 1_500_000))]);
    let image = Image::build(Format::Oci, &host_platform(), vec![tar]);
    registry.push_image("r", "t", &image);
    registry.set_faults(Faults {
        bytes_per_second: Some(1_500_000),
        ..Faults::default()
    });
    let env = Env::new();
    // script(1) gives the tool a terminal; its stdout is the terminal too.
    let tool = env.tool("lpmx-pull");
    let mut words: Vec<String> = vec![tool.get_program().to_string_lossy().into_owned()];
    words.extend(tool.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.push(format!("{}/r:t", registry.host()));
    let output = std::process::Command::new("script")
        .args(["-qec", &words.join(" "), "/dev/null"])
        .env("LPMX_HOME", env.store())
        .env("HOME", env.home())
        .env("TERM", "xterm")
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("\u{1b}["), "no terminal drawing: {text:?}");
    assert!(
        text.contains("=>") || text.contains("=="),
        "no bar: {text:?}"
    );
    assert!(text.contains("\"kind\": \"lpmx.image\""), "{text:?}");
}
