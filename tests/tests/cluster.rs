//! Running as a cluster's tasks do: the launcher's variables reach the
//! program, many processes write to one container at once, and
//! `--ephemeral` runs leave the container as it was. Run as an
//! unprivileged user.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lpmx_tests::containers::debian_container;
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::tree::snapshot;
use lpmx_tests::{Env, Run};

fn bookworm(env: &Env, name: &str) -> LocalRegistry {
    debian_container(env, "bookworm", name, &[])
}

fn exec(env: &Env, args: &[&str], script: &str) -> Command {
    let mut command = env.tool("lpmx-exec");
    command.args(args).args(["--", "/bin/sh", "-c", script]);
    command
}

fn run(mut command: Command) -> Run {
    Run::from(command.output().expect("run lpmx-exec"))
}

/// A directory outside every default bind (/tmp, home), owned by the test
/// user.
fn outside_binds(env: &Env) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lpmx-test-")
        .tempdir_in("/var/tmp")
        .expect("temp dir in /var/tmp");
    env.make_user_dir(dir.path());
    dir
}

#[test]
fn the_launchers_variables_reach_the_program_and_the_container_overrides_them() {
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    let spool = outside_binds(&env);
    let pmix = spool.path().join("pmix.7.0");
    env.make_user_dir(&pmix);
    env.write_file(&pmix.join("server-socket"), "here\n");
    let script = "echo $SLURM_PROCID $PMIX_RANK $OMPI_COMM_WORLD_SIZE $CUDA_VISIBLE_DEVICES \
                  ${LD_LIBRARY_PATH-unset} ${PYTHONPATH-unset} ${MINE-unset}; \
                  cat $PMIX_SERVER_TMPDIR/server-socket || echo $LPMX_BINDS";
    let with_launcher = |command: &mut Command| {
        command
            .env("SLURM_PROCID", "3")
            .env("PMIX_RANK", "3")
            .env("PMIX_SERVER_TMPDIR", &pmix)
            .env("OMPI_COMM_WORLD_SIZE", "8")
            .env("CUDA_VISIBLE_DEVICES", "1")
            .env("LD_LIBRARY_PATH", "/opt/host/lib")
            .env("PYTHONPATH", "/home/me/py")
            .env("MINE", "yes");
    };
    let mut command = exec(&env, &["c"], script);
    with_launcher(&mut command);
    let plain = run(command);
    plain.success();
    assert_eq!(
        plain.stdout, "3 3 8 1 unset unset unset\nhere\n",
        "{plain:#?}"
    );

    // The container's environment file and --env win; --pass-env adds.
    env.run("lpmx-env", ["c", "set", "OMPI_COMM_WORLD_SIZE=2"])
        .success();
    let mut command = exec(
        &env,
        &[
            "--env",
            "SLURM_PROCID=9",
            "--pass-env",
            "MINE",
            "--pass-env",
            "PY*",
            "c",
        ],
        script,
    );
    with_launcher(&mut command);
    let overridden = run(command);
    overridden.success();
    assert_eq!(
        overridden.stdout, "9 3 2 1 unset /home/me/py yes\nhere\n",
        "{overridden:#?}"
    );

    // Without the launcher's variables: none of them, and no bind.
    let mut command = exec(
        &env,
        &["--no-launcher-env", "c"],
        "echo ${SLURM_PROCID-unset} ${PMIX_RANK-unset}; ls /var/tmp",
    );
    with_launcher(&mut command);
    let none = run(command);
    none.success();
    assert_eq!(none.stdout, "unset unset\n", "{none:#?}");
}

/// Every file of the store's layers, for before/after comparisons.
fn layers(env: &Env) -> lpmx_tests::tree::Tree {
    snapshot(&env.store().join("layers"))
}

/// The container's writable layer and its side files.
fn container_state(env: &Env, name: &str) -> Vec<(String, String)> {
    let dir = env.store().join("containers").join(name);
    let mut state: Vec<(String, String)> = snapshot(&dir.join("upper"))
        .into_iter()
        .map(|(path, entry)| (path, entry.to_string()))
        .collect();
    for side in ["upper.whiteouts", "upper.owners"] {
        state.push((
            side.to_owned(),
            fs::read_to_string(dir.join(side)).unwrap_or_default(),
        ));
    }
    state
}

fn private_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(tmp)
        .expect("read TMPDIR")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lpmx-ephemeral.")
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn ephemeral_runs_see_the_container_and_leave_it_as_it_was() {
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    // The container's own changes, made as usual.
    run(exec(
        &env,
        &["--root", "c"],
        "echo kept > /etc/kept && rm /etc/issue && mkdir -p /srv/data && \
         echo image > /srv/data/old && chown 1234:4321 /etc/kept && \
         rm -r /usr/share/doc/apt && mkdir /usr/share/doc/apt && echo new > /usr/share/doc/apt/only",
    ))
    .success();
    let before = container_state(&env, "c");
    let layers_before = layers(&env);
    let tmp = env.path().join("node-local");
    env.make_user_dir(&tmp);

    let script = "cat /etc/kept; test -e /etc/issue || echo issue-gone; ls /usr/share/doc/apt; \
                  echo changed >> /etc/kept; rm /srv/data/old; echo mine > /etc/mine; \
                  rm /etc/motd; mkdir /opt/made; cat /etc/kept /etc/mine; \
                  test -e /etc/motd || echo motd-gone; ls /srv/data | wc -l; \
                  stat -c '%u:%g %a' /etc/kept";
    let mut command = exec(&env, &["--ephemeral", "--root", "c"], script);
    command.env("TMPDIR", &tmp);
    let first = run(command);
    first.success();
    assert_eq!(
        first.stdout, "kept\nissue-gone\nonly\nkept\nchanged\nmine\nmotd-gone\n0\n1234:4321 644\n",
        "{first:#?}"
    );
    assert_eq!(
        container_state(&env, "c"),
        before,
        "the container is unchanged"
    );
    assert_eq!(
        layers(&env),
        layers_before,
        "the image's layers are unchanged"
    );
    assert_eq!(
        private_dirs(&tmp),
        Vec::<PathBuf>::new(),
        "nothing left in TMPDIR"
    );

    // Its writes are gone: the container shows what it showed before.
    let after = run(exec(
        &env,
        &["c"],
        "cat /etc/kept; test -e /etc/mine || echo no-mine; test -e /etc/motd && echo motd; \
         cat /srv/data/old; test -d /opt/made || echo no-made",
    ));
    after.success();
    assert_eq!(
        after.stdout, "kept\nno-mine\nmotd\nimage\nno-made\n",
        "{after:#?}"
    );

    // Two at once do not see each other's writes.
    let barrier = env.path().join("barrier");
    env.make_user_dir(&barrier);
    let racer = |n: u32| {
        let script = format!(
            "echo {n} > /etc/racer-{n}; touch {b}/{n}; \
             while [ $(ls {b} | wc -l) -lt 2 ]; do sleep 0.05; done; ls /etc | grep racer",
            b = barrier.display()
        );
        let mut command = exec(&env, &["--ephemeral", "c"], &script);
        command
            .env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("spawn lpmx-exec")
    };
    let (a, b) = (racer(1), racer(2));
    let (a, b) = (
        Run::from(a.wait_with_output().unwrap()),
        Run::from(b.wait_with_output().unwrap()),
    );
    assert_eq!(a.success().stdout, "racer-1\n", "{a:#?}");
    assert_eq!(b.success().stdout, "racer-2\n", "{b:#?}");
    assert_eq!(private_dirs(&tmp), Vec::<PathBuf>::new());

    // Exit status and signals are the program's; a layer left behind by a
    // killed run (its process gone) is removed by the next one.
    let mut command = exec(&env, &["--ephemeral", "c"], "exit 7");
    command.env("TMPDIR", &tmp);
    run(command).failure(7);
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    let abandoned = tmp.join(format!(
        "lpmx-ephemeral.{}.999999999.c",
        host.trim().replace(['/', '.'], "_")
    ));
    for dir in [
        abandoned.clone(),
        abandoned.join("upper"),
        abandoned.join("upper/etc"),
    ] {
        env.make_user_dir(&dir);
    }
    let mut command = exec(&env, &["--ephemeral", "c"], "kill -TERM $$");
    command.env("TMPDIR", &tmp);
    let status = command.status().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert_eq!(private_dirs(&tmp), Vec::<PathBuf>::new());
    assert_eq!(container_state(&env, "c"), before);
}

#[test]
fn sixty_four_writers_at_once_lose_nothing() {
    const WRITERS: usize = 64;
    const LINES: usize = 20;
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    let layers_before = layers(&env);
    let original = run(exec(&env, &["c"], "cat /usr/share/common-licenses/GPL-3"));
    original.success();
    // Files every writer copies up at the same moment, appending a line.
    let licenses = run(exec(
        &env,
        &["c"],
        "cd /usr/share/common-licenses && find . -type f ! -name GPL-3 -printf '%f\n'",
    ));
    let licenses: Vec<String> = licenses
        .success()
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(licenses.len() >= 8, "{licenses:?}");
    let license_texts: Vec<String> = licenses
        .iter()
        .map(|name| {
            let cat = run(exec(
                &env,
                &["c"],
                &format!("cat /usr/share/common-licenses/{name}"),
            ));
            cat.success().stdout.clone()
        })
        .collect();
    let doc_dirs = run(exec(&env, &["c"], "ls /usr/share/doc | head -64"));
    let doc_dirs: Vec<String> = doc_dirs
        .success()
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(doc_dirs.len(), WRITERS);
    // Each writer copies up and appends to the same image file, makes and
    // fills files in one new directory and in one image directory, deletes
    // an image directory of its own, and (half of them under --root)
    // records an owner.
    // They start together: each waits until all are there.
    let barrier = env.path().join("barrier");
    env.make_user_dir(&barrier);
    let children: Vec<_> = (0..WRITERS)
        .map(|n| {
            let script = format!(
                "touch {b}/{n}; while [ $(ls {b} | wc -l) -lt {WRITERS} ]; do sleep 0.05; done; \
                 cd /usr/share/common-licenses; for f in {licenses}; do echo writer-{n} >> $f; done; \
                 for i in $(seq {LINES}); do echo writer-{n}-line-$i >> /usr/share/common-licenses/GPL-3; done; \
                 mkdir -p /srv/shared && echo {n} > /srv/shared/w{n}; \
                 echo {n} > /usr/share/common-licenses/w{n}; \
                 rm -r /usr/share/doc/{doc}; \
                 if [ {root} = 1 ]; then chown {n}:{n} /srv/shared/w{n}; fi",
                b = barrier.display(),
                licenses = licenses.join(" "),
                doc = doc_dirs[n],
                root = n % 2,
            );
            let args: &[&str] = if n % 2 == 1 { &["--root", "c"] } else { &["c"] };
            let mut command = exec(&env, args, &script);
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().expect("spawn writer")
        })
        .collect();
    for child in children {
        Run::from(child.wait_with_output().unwrap()).success();
    }
    for (name, text) in licenses.iter().zip(&license_texts) {
        let now = run(exec(
            &env,
            &["c"],
            &format!("cat /usr/share/common-licenses/{name}"),
        ));
        now.success();
        assert!(
            now.stdout.starts_with(text.as_str()),
            "{name}: the image's text first, whole"
        );
        let added: BTreeSet<&str> = now.stdout[text.len()..].lines().collect();
        assert_eq!(
            (now.stdout[text.len()..].lines().count(), added.len()),
            (WRITERS, WRITERS),
            "{name}: each writer's line once: {added:?}"
        );
    }
    let services = run(exec(&env, &["c"], "cat /usr/share/common-licenses/GPL-3"));
    services.success();
    assert!(
        services.stdout.starts_with(&original.stdout),
        "the image's text comes first, whole"
    );
    let added: Vec<&str> = services.stdout[original.stdout.len()..].lines().collect();
    let unique: BTreeSet<&str> = added.iter().copied().collect();
    assert_eq!(added.len(), WRITERS * LINES, "no line lost or doubled");
    assert_eq!(unique.len(), WRITERS * LINES);
    let listing = run(exec(
        &env,
        &["--root", "c"],
        "for f in /srv/shared/* /usr/share/common-licenses/w*; do echo $f $(cat $f) \
         $(stat -c %u $f); done; ls /usr/share/doc | wc -l",
    ));
    listing.success();
    let lines: Vec<&str> = listing.stdout.lines().collect();
    assert_eq!(lines.len(), 2 * WRITERS + 1, "{listing:#?}");
    for n in 0..WRITERS {
        let owner = if n % 2 == 1 { n } else { 0 };
        assert!(
            lines.contains(&format!("/srv/shared/w{n} {n} {owner}").as_str()),
            "{listing:#?}"
        );
        assert!(lines.contains(&format!("/usr/share/common-licenses/w{n} {n} 0").as_str()));
    }
    for doc in &doc_dirs {
        let gone = run(exec(
            &env,
            &["c"],
            &format!("test -e /usr/share/doc/{doc} || echo gone"),
        ));
        assert_eq!(gone.stdout, "gone\n", "{doc} stays deleted");
    }
    let remaining: usize = lines.last().unwrap().trim().parse().unwrap();
    let all_docs = snapshot(&env.store().join("layers"))
        .keys()
        .filter(|p| {
            p.split_once("/root/usr/share/doc/")
                .is_some_and(|(_, rest)| !rest.contains('/'))
        })
        .count();
    assert_eq!(remaining, all_docs - WRITERS, "only the deleted ones went");
    assert_eq!(
        layers(&env),
        layers_before,
        "the image's layers are unchanged"
    );
    // No copy in progress is left in the writable layer.
    let upper = env.store().join("containers/c/upper");
    let temps: Vec<_> = snapshot(&upper)
        .into_keys()
        .filter(|p| p.contains(".lpmx-copy-up"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// `command` run as if on cluster node `node`: its own host name and its
/// own process ids (so pids collide with another node's, as on a real
/// cluster), when the tests run as root; as it is otherwise.
fn on_node(node: &str, command: &Command) -> Command {
    if !lpmx_tests::env::running_as_root() {
        let mut same = Command::new(command.get_program());
        same.args(command.get_args()).env_clear();
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                same.env(key, value);
            }
        }
        return same;
    }
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--uts", "--pid", "--fork", "--", "/bin/sh", "-c"])
        .arg(format!("hostname {node} && exec \"$@\""))
        .arg("sh")
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

#[test]
fn eight_pulls_of_one_image_on_four_nodes_fetch_and_unpack_each_blob_once() {
    use lpmx_core::oci::Platform;
    use lpmx_tests::faulty::{Faults, FaultyRegistry};
    use lpmx_tests::image::{self, Format, Image};
    use lpmx_tests::registry::Target;

    let registry = FaultyRegistry::start();
    let tars = (0..3)
        .map(|i| image::tar_of(&[("data/f.bin", &image::noise(i, 600_000))]))
        .collect();
    let image = Image::build(Format::Oci, &Platform::host().to_string(), tars);
    registry.push_image("sim", "2.1", &image);
    // Slow enough that all of them are at it at once.
    registry.set_faults(Faults {
        bytes_per_second: Some(3_000_000),
        ..Faults::default()
    });
    let env = Env::new();
    let tools = lpmx_tests::env::tool_dir();
    // Four nodes, two pulls on each (started together in the node's shell).
    let pull = |out: &str| {
        format!(
            "{t}/lpmx-pull --quiet {}/sim:2.1 | {t}/lpmx-unpack > {out} 2> {out}.err",
            registry.host(),
            t = tools.display()
        )
    };
    let out_dir = env.path().join("out");
    env.make_user_dir(&out_dir);
    let outputs: Vec<(PathBuf, PathBuf)> = (0..4)
        .flat_map(|node| (0..2).map(move |k| (node, k)))
        .map(|(node, k)| {
            let out = out_dir.join(format!("node{node}-{k}.json"));
            (out.clone(), out.with_extension("json.err"))
        })
        .collect();
    let children: Vec<_> = (0..4)
        .map(|node| {
            let (a, b) = (&outputs[2 * node].0, &outputs[2 * node + 1].0);
            let script = format!(
                "({}) & ({}) & wait",
                pull(&a.display().to_string()),
                pull(&b.display().to_string())
            );
            let mut inner = env.command_as_user("/bin/sh");
            inner.args(["-c", &script]);
            on_node(&format!("node{node}"), &inner)
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("spawn a node")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let runs: Vec<Run> = outputs
        .iter()
        .map(|(out, err)| Run {
            code: Some(0),
            stdout: fs::read_to_string(out).unwrap_or_default(),
            stderr: fs::read_to_string(err).unwrap_or_default(),
        })
        .collect();
    let first = runs[0].layer_dirs();
    assert_eq!(first.len(), 3);
    for run in &runs {
        assert_eq!(run.layer_dirs(), first, "{run:#?}");
    }
    for layer in &image.layers {
        let full = registry.full_downloads(&layer.digest.to_string());
        assert_eq!(full, 1, "layer {} downloaded {full} times", layer.digest);
    }
    for dir in &first {
        assert_eq!(
            fs::read(dir.join("root/data/f.bin")).unwrap().len(),
            600_000,
            "{}",
            dir.display()
        );
    }
    let layers = fs::read_dir(env.store().join("layers")).unwrap().count();
    assert_eq!(layers, 3, "each layer unpacked once");
    let tmp = env.store_temps();
    assert!(tmp.is_empty(), "leftovers: {tmp:?}");
    // A container of it works.
    env.run_with_input("lpmx-mkroot", &["sim"], &runs[0].stdout)
        .success();
}

#[test]
fn writers_killed_midway_leave_the_container_whole() {
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    let layers_before = layers(&env);
    let licenses = "/usr/share/common-licenses";
    let original = run(exec(&env, &["c"], &format!("cat {licenses}/GPL-2")));
    original.success();
    // Writers busy copying up, appending, making and removing files and
    // directories, killed (SIGKILL) wherever they are.
    let mut children: Vec<_> = (0..8)
        .map(|n| {
            let script = format!(
                "i=0; while true; do i=$((i+1)); echo writer-{n}-$i >> {licenses}/GPL-2; \
                 mkdir -p /srv/w{n}/$i && cp /usr/bin/bash /srv/w{n}/$i/bash && \
                 rm -r /srv/w{n}/$i; cp {licenses}/GPL-3 /etc/gpl-{n}-$i; rm /etc/gpl-{n}-$i; done"
            );
            let mut command = exec(&env, &["c"], &script);
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            command.spawn().expect("spawn writer")
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for child in &mut children {
        // The writer's shell and whatever it runs: its process group.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &child.id().to_string()])
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
    // The container still works, as it was plus whole lines.
    let text = run(exec(&env, &["c"], &format!("cat {licenses}/GPL-2")));
    text.success();
    assert!(text.stdout.starts_with(&original.stdout));
    for line in text.stdout[original.stdout.len()..].lines() {
        let fields: Vec<&str> = line.split('-').collect();
        assert!(
            fields.len() == 3 && fields[0] == "writer" && fields[2].parse::<u32>().is_ok(),
            "a torn line: {line:?}"
        );
    }
    let listing = run(exec(
        &env,
        &["c"],
        "find /usr /etc /srv /var -name '*lpmx-copy-up*' | wc -l; \
         ls -R /srv /etc > /dev/null && echo listed",
    ));
    listing.success();
    assert_eq!(listing.stdout, "0\nlisted\n", "{listing:#?}");
    // And goes on: a new writer works as before.
    run(exec(
        &env,
        &["c"],
        "echo after > /etc/after && cat /etc/after && rm /etc/after",
    ))
    .success();
    assert_eq!(
        layers(&env),
        layers_before,
        "the image's layers are unchanged"
    );
}

/// `tool args < input` in `env`, with `LPMX_STORE_PATH` set to `shared`.
fn with_shared_stores(env: &Env, shared: &str, tool: &str, args: &[&str], input: &[u8]) -> Run {
    Run::feeding(
        env.tool(tool).env("LPMX_STORE_PATH", shared).args(args),
        input,
    )
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_read_only_shared_store_serves_other_users_containers_without_copies() {
    use lpmx_core::oci::Platform;
    use lpmx_tests::faulty::FaultyRegistry;
    use lpmx_tests::image::{Format, Image, RawEntry, raw_tar};
    use lpmx_tests::registry::Target;
    use std::os::unix::fs::PermissionsExt;

    // The site's store, another user's: read-only to the test user. Its
    // owner works under a strict umask: what lpmx writes into a shared
    // store gets the sharing whatever the umask.
    let site = Env::other_user().with_umask(0o077);
    // Its owner opens it to others and shares it: lpmx-unpack then gives
    // every layer what they need to read it.
    fs::set_permissions(site.store(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        site.store().join(lpmx_core::store::Store::SHARED_MARKER),
        "",
    )
    .unwrap();
    let registry = FaultyRegistry::start();
    let base = fs::read(lpmx_tests::rootfs::debian_rootfs_tar("bookworm")).unwrap();
    let extra = raw_tar(&[
        RawEntry::dir("srv/"),
        RawEntry::dir("srv/secret/").mode(0o700),
        RawEntry::file("srv/secret/key", b"k\n").mode(0o600),
        RawEntry::file(
            "usr/local/bin/hello",
            b"#!/bin/sh\necho hello from the site\n",
        )
        .mode(0o750),
    ]);
    let image = Image::build(
        Format::Oci,
        &Platform::host().to_string(),
        vec![base, extra],
    );
    registry.push_image("sim", "2.1", &image);
    let reference = format!("{}/sim:2.1", registry.host());
    site.pull_and_unpack(&reference).success();
    let site_store = site.store().display().to_string();
    let site_before = snapshot(&site.store());
    registry.clear_log();

    // A user of it pulls, unpacks and makes a container: nothing of the
    // image is downloaded or copied into the user's store.
    let user = Env::new();
    let pulled = with_shared_stores(&user, &site_store, "lpmx-pull", &["-q", &reference], b"");
    pulled.success();
    for layer in &image.layers {
        assert_eq!(registry.full_downloads(&layer.digest.to_string()), 0);
    }
    let unpacked = with_shared_stores(
        &user,
        &site_store,
        "lpmx-unpack",
        &[],
        pulled.stdout.as_bytes(),
    );
    unpacked.success();
    for dir in unpacked.layer_dirs() {
        assert!(dir.starts_with(site.store()), "{}", dir.display());
    }
    with_shared_stores(
        &user,
        &site_store,
        "lpmx-mkroot",
        &["dev"],
        unpacked.stdout.as_bytes(),
    )
    .success();
    assert_eq!(entries(&user.store().join("layers")), Vec::<String>::new());
    let layer_blobs: Vec<String> = image
        .layers
        .iter()
        .map(|l| l.digest.hex().to_owned())
        .collect();
    assert!(
        entries(&user.store().join("blobs/sha256"))
            .iter()
            .all(|b| !layer_blobs.contains(b)),
        "{:?}",
        entries(&user.store().join("blobs/sha256"))
    );

    // It runs, sees the image's modes and owners, and writes only to the
    // user's writable layer; the shared store is unchanged. (Run without
    // LPMX_STORE_PATH: the container's stack names where its layers are.)
    let script = "cat /etc/debian_version >/dev/null && hello && cat /srv/secret/key && \
                  stat -c '%a %U' /srv/secret /srv/secret/key /usr/local/bin/hello && \
                  echo new > /srv/secret/key && rm /etc/issue && cat /srv/secret/key && \
                  ! test -e /etc/issue";
    let ran = run(exec(&user, &["--root", "dev"], script));
    ran.success();
    assert_eq!(
        ran.stdout, "hello from the site\nk\n700 root\n600 root\n750 root\nnew\n",
        "{ran:#?}"
    );
    assert!(
        user.store()
            .join("containers/dev/upper/srv/secret/key")
            .is_file()
    );
    assert_eq!(
        tree_diff(&site_before, &snapshot(&site.store())),
        Vec::<String>::new()
    );

    // The index lpmx-unpack made in the site's store serves too.
    let stack = fs::read_to_string(user.store().join("containers/dev/stack.json")).unwrap();
    let stack: serde_json::Value = serde_json::from_str(&stack).unwrap();
    let index = stack["index"].as_str().unwrap();
    assert!(index.starts_with(&site_store), "{index}");
    assert_eq!(entries(&user.store().join("indexes")), Vec::<String>::new());

    // An image file the site imported is instant for its users.
    let tree = site.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/tool.conf"), "site tool\n").unwrap();
    let sqfs = site.path().join("tool.sqfs");
    lpmx_tests::sif::mksquashfs(&tree, &sqfs, &[]);
    let sqfs = sqfs.to_str().unwrap();
    site.run("lpmx-unpack", [sqfs]).success();
    let site_before = snapshot(&site.store());
    let imported = with_shared_stores(&user, &site_store, "lpmx-unpack", &[sqfs], b"");
    imported
        .success()
        .stderr_has("imported before and unchanged");
    assert!(imported.layer_dirs()[0].starts_with(site.store()));
    assert_eq!(entries(&user.store().join("layers")), Vec::<String>::new());

    // Packed, the container moves to a user without the shared store.
    let packed = user.tool("lpmx-pack").arg("dev").output().unwrap();
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let elsewhere = Env::new();
    elsewhere
        .run_with_input("lpmx-unpack", &[], &packed.stdout)
        .success();
    let ran = run(exec(
        &elsewhere,
        &["--root", "dev"],
        "cat /srv/secret/key; hello",
    ));
    ran.success();
    assert_eq!(ran.stdout, "new\nhello from the site\n", "{ran:#?}");
    assert_eq!(
        tree_diff(&site_before, &snapshot(&site.store())),
        Vec::<String>::new()
    );

    // A search path entry that is not a store is named, and nothing runs.
    let missing = user.path().join("no-such-store");
    let failed = with_shared_stores(
        &user,
        missing.to_str().unwrap(),
        "lpmx-pull",
        &["-q", &reference],
        b"",
    );
    failed
        .failure(74)
        .stderr_has("LPMX_STORE_PATH")
        .stderr_has("no-such-store");

    // A shared store gone from under a container is named, with where it
    // was named: the container's stack, not the variable.
    let moved = site.path().join("moved-store");
    fs::rename(site.store(), &moved).unwrap();
    let gone = run(exec(&user, &["dev"], "true"));
    let _ = fs::rename(&moved, site.store());
    gone.failure(74)
        .stderr_has(&format!("cannot use shared store {site_store}"))
        .stderr_has("named by container dev's stack.json")
        .stderr_has("No such file or directory");
}

fn tree_diff(a: &lpmx_tests::tree::Tree, b: &lpmx_tests::tree::Tree) -> Vec<String> {
    lpmx_tests::tree::diff(a, b)
}
