//! The Go toolchain inside a container: Debian's golang-go installed there
//! under --root, `go build` run there (the go command is a Go program that
//! starts more: compile, asm, link, and gcc for cgo), and the programs it
//! builds, static (CGO_ENABLED=0, started by lpmx's loader) and dynamic
//! (cgo), run there; and a Go program from Debian's archive (restic). All
//! as an unprivileged user; each sees only the container.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use lpmx_tests::containers::debian_container;
use lpmx_tests::{Env, Run};

fn exec(env: &Env, options: &[&str], script: &str) -> Run {
    let mut c = env.tool("lpmx-exec");
    c.args(options).args(["c", "--", "/bin/sh", "-c", script]);
    Run::from(c.output().expect("run lpmx-exec"))
}

/// Whether the ELF file at `path` names an interpreter (is dynamic).
fn is_dynamic(path: &Path) -> bool {
    let elf = fs::read(path).unwrap();
    let (phoff, phnum) = (
        u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize,
        u16::from_le_bytes(elf[56..58].try_into().unwrap()) as usize,
    );
    (0..phnum).any(|i| {
        let at = phoff + 56 * i;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

#[test]
fn go_builds_and_runs_its_programs_inside_the_container() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    // The host has Go (it builds the tests); the container has none.
    let run = exec(&env, &[], "command -v go");
    assert_ne!(run.code, Some(0), "{run:#?}");
    exec(
        &env,
        &["--root"],
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends -o Dpkg::Use-Pty=0 golang-go gcc libc6-dev restic >/dev/null",
    )
    .success();

    // The program's source, where the container sees it (under /tmp).
    let source = env.path().join("inside");
    env.make_user_dir(&source);
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/inside");
    for file in ["go.mod", "main.go", "cgo.go"] {
        env.write_file(&source.join(file), fs::read(here.join(file)).unwrap());
    }
    let marker = tempfile::Builder::new()
        .prefix("lpmx-host-only-")
        .tempfile_in("/var/tmp")
        .expect("marker");
    let marker = marker.path().to_str().unwrap().to_owned();
    let user_ids = exec(&env, &[], "echo $(id -u):$(id -g)").stdout;
    let upper = env.store().join("containers/c/upper");

    for cgo in ["0", "1"] {
        let program = source.join(format!("inside-cgo{cgo}"));
        let run = exec(
            &env,
            &[],
            &format!(
                "cd {} && HOME={} GOCACHE={}/cache GOFLAGS=-mod=mod CGO_ENABLED={cgo} \
                 go build -o {} . && go version",
                source.display(),
                source.display(),
                source.display(),
                program.display()
            ),
        );
        run.success();
        assert!(run.stdout.starts_with("go version go1.19"), "{run:#?}");
        assert_eq!(is_dynamic(&program), cgo == "1", "CGO_ENABLED={cgo}");

        for (options, ids) in [(&[][..], user_ids.trim()), (&["--root"][..], "0:0")] {
            let wrote = format!("/var/lib/go-wrote-{cgo}{}", options.len());
            let run = exec(
                &env,
                options,
                &format!("{} {marker} {wrote} 7", program.display()),
            );
            run.failure(7);
            assert_eq!(
                run.stdout,
                format!("codename=bookworm\nmarker_visible=false\nwrite=true\nids={ids}\n"),
                "CGO_ENABLED={cgo} {options:?}: {run:#?}"
            );
            assert_eq!(
                fs::read_to_string(upper.join(&wrote[1..])).unwrap(),
                "written by go\n"
            );
        }

        // SIGTERM ends it as it ends the program outside.
        let mut child = env.tool("lpmx-exec");
        let mut child = child
            .args(["c", "--", program.to_str().unwrap(), "sleep"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "sleeping\n");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(
            child.wait().unwrap().signal(),
            Some(15),
            "CGO_ENABLED={cgo}"
        );
    }

    // A Go program from Debian's archive, writing a repository inside.
    let run = exec(
        &env,
        &[],
        "restic version && RESTIC_PASSWORD=lpmx restic init --repo /srv/repo -q && \
         RESTIC_PASSWORD=lpmx restic backup --repo /srv/repo -q /etc/apt && \
         RESTIC_PASSWORD=lpmx restic ls --repo /srv/repo latest /etc/apt | grep -cx /etc/apt/sources.list",
    );
    run.success();
    assert!(run.stdout.starts_with("restic 0.14"), "{run:#?}");
    assert!(run.stdout.ends_with("\n1\n"), "{run:#?}");
    assert!(upper.join("srv/repo/config").is_file());
}
