//! Composability: host programs called from inside a container, and a
//! container's programs exposed to the host and to other containers, as
//! an unprivileged user.

use lpmx_tests::containers::debian_container;
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::{Env, Run};

/// Containers of the given suites, named after them, in one store.
fn containers(env: &Env, suites: &[(&str, &[&str])]) -> Vec<LocalRegistry> {
    suites
        .iter()
        .map(|(suite, args)| debian_container(env, suite, suite, args))
        .collect()
}

#[test]
fn host_programs_run_on_the_host_from_inside() {
    let env = Env::new();
    let _registry = containers(
        &env,
        &[(
            "bookworm",
            &["--host-program", "/bin/cat:/usr/local/bin/hostcat"],
        )],
    );
    env.run(
        "lpmx-env",
        ["bookworm", "host", "add", "/bin/sh:/usr/local/bin/hostsh"],
    )
    .success();
    let list = env.run("lpmx-env", ["bookworm", "host", "list"]);
    assert_eq!(
        list.stdout,
        "/usr/local/bin/hostcat=/bin/cat\n/usr/local/bin/hostsh=/bin/sh\n"
    );
    let host_file = env.path().join("host-only.txt");
    env.write_file(&host_file, "seen from the host\n");
    let host_file = host_file.display().to_string();
    // Nothing of /tmp inside: only host programs can see the file.
    let script = format!(
        "cat {host_file} 2>/dev/null || echo container cannot; hostcat {host_file}; \
         hostsh -c 'cat {host_file}; exit 3'; echo status $?"
    );
    let run = env.run(
        "lpmx-exec",
        [
            "--no-bind",
            "all",
            "bookworm",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    run.success();
    assert_eq!(
        run.stdout, "container cannot\nseen from the host\nseen from the host\nstatus 3\n",
        "{run:#?}"
    );
    let mut command = env.tool("lpmx-exec");
    command.args(["bookworm", "--", "/bin/sh", "-c", "hostcat | tr a-z A-Z"]);
    let run = Run::feeding(&mut command, "through stdin\n");
    assert_eq!(run.stdout, "THROUGH STDIN\n", "{run:#?}");
    env.run("lpmx-env", ["bookworm", "host", "add", "relative:/x"])
        .failure(2)
        .stderr_has("invalid host program");
}

#[test]
fn exposed_programs_compose_host_to_trixie_to_bullseye() {
    let env = Env::new();
    let _registry = containers(&env, &[("bullseye", &[]), ("trixie", &[])]);
    let bin = env.path().join("bin");
    env.make_user_dir(&bin);
    let bin_arg = bin.display().to_string();
    let run = env.run(
        "lpmx-env",
        [
            "bullseye",
            "expose",
            "cat",
            "--as",
            "bullseye-cat",
            "--bin",
            &bin_arg,
        ],
    );
    run.success();
    let wrapper = bin.join("bullseye-cat");
    assert_eq!(run.stdout.trim(), wrapper.display().to_string());

    // From the host.
    let run = Run::from(
        env.command_as_user(&wrapper)
            .arg("/etc/debian_version")
            .output()
            .unwrap(),
    );
    run.success();
    assert!(run.stdout.starts_with("11."), "bullseye's file: {run:#?}");
    let run = Run::feeding(&mut env.command_as_user(&wrapper), "piped\n");
    assert_eq!(run.stdout, "piped\n");
    let run = Run::from(
        env.command_as_user(&wrapper)
            .arg("/no/such")
            .output()
            .unwrap(),
    );
    run.failure(1);

    // From inside trixie: trixie's shell calls bullseye's cat.
    let w = wrapper.display();
    let script = format!(
        "cat /etc/debian_version; {w} /etc/debian_version; echo x | {w}; {w} /no/such 2>/dev/null; echo status $?"
    );
    let run = env.run("lpmx-exec", ["trixie", "--", "/bin/sh", "-c", &script]);
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("13."), "{run:#?}");
    assert!(lines[1].starts_with("11."), "{run:#?}");
    assert_eq!(&lines[2..], ["x", "status 1"], "{run:#?}");
}
