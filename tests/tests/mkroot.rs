//! lpmx-mkroot: containers from layers documents, listed and removed, run
//! as an unprivileged user.

use std::fs;
use std::time::Instant;

use lpmx_core::oci::Platform;
use lpmx_tests::faulty::FaultyRegistry;
use lpmx_tests::image::{Format, small_image};
use lpmx_tests::registry::Target;
use lpmx_tests::{Env, Run};

/// A store holding an unpacked three-layer image; returns its layers document.
fn unpacked(env: &Env) -> String {
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Oci, &Platform::host().to_string(), 3);
    registry.push_image("r", "t", &image);
    let run = env.pull_and_unpack(&format!("{}/r:t", registry.host()));
    run.success();
    run.stdout.clone()
}

#[test]
fn containers_share_layers_and_are_listed_and_removed() {
    let env = Env::new();
    let layers = unpacked(&env);
    let document: serde_json::Value = serde_json::from_str(&layers).unwrap();
    let layer_dirs: Vec<std::path::PathBuf> = document["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap().into())
        .collect();

    let run = env.run_with_input("lpmx-mkroot", &["dev"], &layers);
    run.success();
    let stack = run.json();
    assert_eq!(stack["kind"], "lpmx.stack");
    assert_eq!(stack["name"], "dev");
    let dir = env.store().join("containers/dev");
    assert_eq!(stack["upper"], dir.join("upper").to_str().unwrap());
    assert_eq!(stack["config"]["cmd"][0], "/bin/sh");
    let stacked: Vec<_> = stack["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<_> = layer_dirs
        .iter()
        .map(|d| d.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stacked, expected,
        "the stack names the shared layers, bottom first"
    );
    // Nothing copied: a stack file, an env file, a (here empty) host
    // programs file, an empty upper; the layers' index is the image's, shared.
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["env", "host-programs", "stack.json", "upper"]);
    assert_eq!(fs::read_dir(dir.join("upper")).unwrap().count(), 0);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("stack.json")).unwrap()).unwrap();
    assert_eq!(on_disk, stack);

    // A second container of the same image shares every layer.
    let started = Instant::now();
    let second = env.run_with_input(
        "lpmx-mkroot",
        &["--bind", "/scratch:/data", "dev2"],
        &layers,
    );
    second.success();
    assert!(started.elapsed().as_secs() < 5);
    assert_eq!(second.json()["layers"], stack["layers"]);
    assert_eq!(second.json()["index"], stack["index"]);
    assert!(std::path::Path::new(stack["index"].as_str().unwrap()).is_file());
    assert_eq!(second.json()["binds"][0]["container"], "/data");

    let listed = env.run("lpmx-mkroot", ["--list"]);
    listed.success();
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{listed:#?}");
    assert!(
        lines[0].starts_with("dev\t") && lines[0].ends_with("3 layers"),
        "{listed:#?}"
    );
    let json = env.run("lpmx-mkroot", ["--list", "--json"]).json();
    assert_eq!(json["kind"], "lpmx.containers");
    assert_eq!(json["containers"][1]["name"], "dev2");

    // Removing one leaves the layers and the other container as they were.
    env.run("lpmx-mkroot", ["--remove", "dev"]).success();
    assert!(!dir.exists());
    for layer in &layer_dirs {
        assert!(
            layer.join("meta.json").is_file(),
            "a shared layer was touched"
        );
    }
    let listed = env.run("lpmx-mkroot", ["--list"]);
    assert!(listed.stdout.starts_with("dev2\t"), "{listed:#?}");
    assert_eq!(fs::read_dir(env.store().join("tmp")).unwrap().count(), 0);
}

#[test]
fn bad_input_creates_nothing() {
    let env = Env::new();
    let layers = unpacked(&env);
    let containers = || {
        fs::read_dir(env.store().join("containers"))
            .unwrap()
            .count()
    };

    // The image document instead of the layers document.
    let image = env.run_with_input(
        "lpmx-mkroot",
        &["x"],
        r#"{"kind":"lpmx.image","version":1}"#,
    );
    image
        .failure(65)
        .stderr_has("expected an lpmx.layers document (the output of lpmx-unpack)");
    env.run_with_input("lpmx-mkroot", &["x"], "")
        .failure(65)
        .stderr_has("no input");

    // A layer that is not in this store.
    let mut missing: serde_json::Value = serde_json::from_str(&layers).unwrap();
    missing["layers"][0]["diff_id"] =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000".into();
    env.run_with_input("lpmx-mkroot", &["x"], missing.to_string())
        .failure(66)
        .stderr_has("is not unpacked in this store");

    // Names that are not one safe path component.
    for bad in ["../escape", "a/b", ".x", ""] {
        env.run_with_input("lpmx-mkroot", &[bad], &layers)
            .failure(2);
    }
    assert_eq!(containers(), 0);

    // A name already taken.
    env.run_with_input("lpmx-mkroot", &["dev"], &layers)
        .success();
    env.run_with_input("lpmx-mkroot", &["dev"], &layers)
        .failure(73)
        .stderr_has("exists already");
    assert_eq!(containers(), 1);

    env.run("lpmx-mkroot", ["--remove", "nope"])
        .failure(66)
        .stderr_has("no container");
    env.run("lpmx-mkroot", ["--bind", "relative", "y"])
        .failure(2);
    env.run("lpmx-mkroot", Vec::<&str>::new()).failure(2);
    assert_eq!(fs::read_dir(env.store().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_relative_store_location_is_taken_from_where_the_tool_starts() {
    let env = Env::new();
    let registry = FaultyRegistry::start();
    let image = small_image(Format::Oci, &Platform::host().to_string(), 2);
    registry.push_image("r", "t", &image);
    // LPMX_HOME=store, from the env's directory.
    let relative = |tool: &str, args: &[&str], input: &str| {
        Run::feeding(env.tool(tool).args(args).env("LPMX_HOME", "store"), input)
    };
    let pulled = relative(
        "lpmx-pull",
        &["-q", &format!("{}/r:t", registry.host())],
        "",
    );
    pulled.success();
    let unpacked = relative("lpmx-unpack", &[], &pulled.stdout);
    unpacked.success();
    let made = relative("lpmx-mkroot", &["dev"], &unpacked.stdout);
    made.success();
    // Every path the documents name is absolute, in the store.
    let stack = made.json();
    let store = env.store();
    let named = std::iter::once(&stack["upper"])
        .chain([&stack["index"], &stack["env_file"]])
        .chain(
            stack["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| &l["path"]),
        );
    for path in named {
        let path = std::path::Path::new(path.as_str().unwrap());
        assert!(path.starts_with(&store), "{path:?} is not in {store:?}");
    }
    // So the container is usable from anywhere, with the store named
    // another way.
    let packed = env
        .tool("lpmx-pack")
        .arg("dev")
        .current_dir(env.home())
        .env("LPMX_HOME", "../store")
        .output()
        .unwrap();
    Run::from(packed).success();
}
