//! lpmx-env: a container's environment changed while it is in use, as an
//! unprivileged user.

use lpmx_tests::containers::debian_container;
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::{Env, Run};

fn bookworm(env: &Env, name: &str) -> LocalRegistry {
    debian_container(env, "bookworm", name, &[])
}

fn exec_sh(env: &Env, name: &str, script: &str) -> Run {
    env.run("lpmx-exec", [name, "--", "/bin/sh", "-c", script])
}

#[test]
fn set_unset_and_list_from_arguments_and_stdin() {
    let env = Env::new();
    let _registry = bookworm(&env, "dev");
    env.run("lpmx-env", ["dev", "set", "A=1", "B=two words", "C=x=y"])
        .success();
    env.run_with_input(
        "lpmx-env",
        &["dev", "set"],
        "# from a Makefile\nD=4\n\nA=one\n",
    )
    .success();
    env.run("lpmx-env", ["dev", "unset", "B"]).success();
    let list = env.run("lpmx-env", ["dev", "list"]);
    list.success();
    assert_eq!(list.stdout, "A=one\nC=x=y\nD=4\n");
    let json = env.run("lpmx-env", ["dev", "list", "--json"]).json();
    assert_eq!(json["kind"], "lpmx.env");
    assert_eq!(json["env"]["C"], "x=y");

    let run = exec_sh(&env, "dev", "echo $A/$C/$D/${B-unset}");
    run.success();
    assert_eq!(run.stdout, "one/x=y/4/unset\n");

    env.run("lpmx-env", ["dev", "set", "NOEQUALS"])
        .failure(2)
        .stderr_has("KEY=VALUE");
    env.run("lpmx-env", ["dev", "set", "=v"])
        .failure(2)
        .stderr_has("invalid variable name");
    env.run("lpmx-env", ["nosuch", "list"])
        .failure(66)
        .stderr_has("nosuch");
    env.run("lpmx-env", ["dev", "set"])
        .failure(2)
        .stderr_has("nothing to set");
}

#[test]
fn a_running_shell_starts_programs_with_the_new_environment() {
    let env = Env::new();
    let _registry = bookworm(&env, "dev");
    env.run("lpmx-env", ["dev", "set", "GONE=soon", "KEPT=yes"])
        .success();
    let go = env.path().join("go");
    // The shell starts before the change; the programs it starts after the
    // change see it. Its own $GONE stays as it was; an exported variable
    // lpmx-env also sets is replaced for the programs it starts.
    let script = format!(
        "export FOO=mine; while [ ! -e {go} ]; do sleep 0.1; done; \
         printenv FOO; printenv GONE || echo gone; printenv KEPT; echo shell:$GONE",
        go = go.display()
    );
    let child = env.spawn("lpmx-exec", ["dev", "--", "/bin/sh", "-c", &script]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    env.run("lpmx-env", ["dev", "set", "FOO=from-lpmx-env"])
        .success();
    env.run("lpmx-env", ["dev", "unset", "GONE"]).success();
    env.write_file(&go, "");
    let output = child.wait_with_output().unwrap();
    let run = Run::from(output);
    run.success();
    assert_eq!(
        run.stdout, "from-lpmx-env\ngone\nyes\nshell:soon\n",
        "{run:#?}"
    );
}

#[test]
fn concurrent_edits_lose_nothing() {
    let env = Env::new();
    let _registry = bookworm(&env, "dev");
    let children: Vec<_> = (0..16)
        .map(|i| env.spawn("lpmx-env", ["dev", "set", &format!("K{i}={i}")]))
        .collect();
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let list = env.run("lpmx-env", ["dev", "list"]);
    list.success();
    assert_eq!(list.stdout.lines().count(), 16, "{list:#?}");
    for i in 0..16 {
        assert!(list.stdout.contains(&format!("K{i}={i}\n")), "{list:#?}");
    }
}

#[test]
fn lpmx_variables_appear_once_however_deep_the_execs() {
    let env = Env::new();
    let _registry = bookworm(&env, "dev");
    // env execs env execs env: no shell in between to rebuild the
    // environment, so a variable libunion added again at every exec
    // would pile up.
    let run = env.run(
        "lpmx-exec",
        ["dev", "--", "/usr/bin/env", "/usr/bin/env", "/usr/bin/env"],
    );
    run.success();
    let mut counts = std::collections::BTreeMap::new();
    for line in run.stdout.lines() {
        if let Some((name, _)) = line.split_once('=') {
            *counts.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "repeated variables {repeated:?}\n{run:#?}"
    );
    assert_eq!(counts.get("LPMX_LIBS"), Some(&1), "{run:#?}");
}
