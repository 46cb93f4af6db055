//! Static programs stay inside: Debian's busybox-static in bookworm and
//! trixie containers, started by lpmx's loader with libunion linked in and
//! kept inside by the system-call trap alone (no preload can reach them).
//! Run as an unprivileged user; the same checks the preload's programs
//! pass: listings that merge the layers, reads of the image's files, writes
//! and deletes that land in the writable layer, shells and pipelines,
//! programs started from a static shell and the reverse, exit statuses,
//! signals, fake root, threads.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use std::fs;

use lpmx_tests::containers::debian_container_with;
use lpmx_tests::env::tool_dir;
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::tree::{diff, snapshot};
use lpmx_tests::{Env, Run};

struct Container {
    env: Env,
    _registry: LocalRegistry,
}

impl Container {
    fn new(suite: &str) -> Container {
        let env = Env::new();
        let registry = debian_container_with(&env, suite, &["busybox-static"], "c", &[]);
        Container {
            env,
            _registry: registry,
        }
    }

    fn command(&self, options: &[&str], command: &[&str]) -> Command {
        let mut c = self.env.tool("lpmx-exec");
        c.args(options).arg("c").arg("--").args(command);
        c
    }

    fn run(&self, options: &[&str], command: &[&str]) -> Run {
        Run::from(
            self.command(options, command)
                .output()
                .expect("run lpmx-exec"),
        )
    }

    /// `script` run by busybox's own shell.
    fn busybox_sh(&self, options: &[&str], script: &str) -> Run {
        self.run(options, &["/bin/busybox", "sh", "-c", script])
    }

    /// `script` run by the image's dash (a dynamic program).
    fn sh(&self, script: &str) -> Run {
        self.run(&[], &["/bin/sh", "-c", script])
    }
}

fn check(suite: &str) {
    let c = Container::new(suite);
    let layers = c.env.store().join("layers");
    let before = snapshot(&layers);
    let version = c.sh("cat /etc/debian_version").stdout;
    assert!(!version.trim().is_empty());

    // Listings merge the layers as the dynamic tools' do, file by file.
    let ours = c.run(&[], &["/bin/busybox", "find", "/usr", "/etc", "/var"]);
    ours.success();
    let theirs = c.run(&[], &["find", "/usr", "/etc", "/var"]);
    theirs.success();
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert!(sorted(&ours.stdout).len() > 1000, "{suite}: busybox find");
    assert_eq!(
        sorted(&ours.stdout),
        sorted(&theirs.stdout),
        "{suite}: busybox find and GNU find disagree"
    );
    let ours = c.busybox_sh(&[], "ls -lnR /usr/share/doc | wc -l; ls -1 /etc | md5sum");
    let theirs = c.sh("ls -lnR /usr/share/doc | wc -l; ls -1 /etc | md5sum");
    ours.success();
    assert_eq!(
        ours.stdout, theirs.stdout,
        "{suite}: busybox ls -lR and GNU ls"
    );

    // The way to a bind the image lacks lists alike, from the trap and
    // from the preload, in a program started there too.
    let bind = format!("{}:/srv/way/to/data", c.env.path().display());
    let script = "ls /srv; ls /srv/way; ls /srv/way/to; cd /srv/way && ls && /bin/pwd";
    let ours = c.busybox_sh(&["--bind", &bind], script);
    let theirs = c.run(&["--bind", &bind], &["/bin/sh", "-c", script]);
    ours.success();
    assert_eq!(
        ours.stdout, "way\nto\ndata\nto\n/srv/way\n",
        "{suite}: {ours:#?}"
    );
    assert_eq!(ours.stdout, theirs.stdout, "{suite}: busybox and GNU ls");

    // The image's files, never the host's.
    let marker = tempfile::Builder::new()
        .prefix("lpmx-host-only-")
        .tempfile_in("/var/tmp")
        .expect("marker");
    let marker = marker.path().to_str().unwrap().to_owned();
    let run = c.busybox_sh(
        &[],
        &format!(
            "cat /etc/debian_version; test -e {marker} && echo host-visible; \
             readlink /proc/self/exe; cat /proc/self/comm"
        ),
    );
    run.success();
    assert_eq!(
        run.stdout,
        // /bin is a symlink to usr/bin: the kernel names the file itself.
        format!("{version}/usr/bin/busybox\nbusybox\n"),
        "{suite}: {run:#?}"
    );

    // A process's command line (/proc/PID/cmdline, what ps shows) is the
    // program's own, not the loader's: static or dynamic, started from
    // either shell, and a script's as the kernel makes it. The loader's
    // request (its environment) stays out of the program's environment.
    let run = c.sh("cat /proc/self/cmdline | tr '\\0' '|'; echo; \
         busybox cat /proc/self/cmdline | tr '\\0' '|'; echo; \
         printf '#!/bin/sh\\ncat /proc/$$/cmdline\\n' > /opt/s; \
         chmod +x /opt/s; /opt/s a 'b c' | tr '\\0' '|'; echo; \
         printf '#!/opt/s -x\\n' > /opt/t; chmod +x /opt/t; /opt/t y | tr '\\0' '|'; echo; \
         env | grep -c '^LPMX_LOADER_'; busybox env | grep -c '^LPMX_LOADER_'");
    assert_eq!(
        run.stdout,
        "cat|/proc/self/cmdline|\nbusybox|cat|/proc/self/cmdline|\n/bin/sh|/opt/s|a|b c|\n\
         /bin/sh|/opt/s|-x|/opt/t|y|\n0\n0\n",
        "{suite}: {run:#?}"
    );
    let run = c.busybox_sh(&[], "/bin/cat /proc/self/cmdline | tr '\\0' '|'");
    assert_eq!(
        run.stdout, "/bin/cat|/proc/self/cmdline|",
        "{suite}: {run:#?}"
    );

    // Writes, renames and deletes land in the writable layer.
    let run = c.busybox_sh(
        &[],
        "echo made > /etc/made-by-busybox && mkdir -p /opt/bb/sub && \
         mv /etc/made-by-busybox /opt/bb/sub/f && rm /etc/hostname && \
         rm -r /usr/share/doc/dpkg && cat /opt/bb/sub/f",
    );
    run.success();
    assert_eq!(run.stdout, "made\n", "{suite}: {run:#?}");
    let run = c.sh(
        "cat /opt/bb/sub/f; test -e /etc/hostname || echo no-hostname; \
         test -e /usr/share/doc/dpkg || echo no-dpkg-doc; ls /etc | grep -c made-by",
    );
    assert_eq!(
        run.stdout, "made\nno-hostname\nno-dpkg-doc\n0\n",
        "{suite}: the dynamic tools see busybox's changes: {run:#?}"
    );
    let upper = c.env.store().join("containers/c/upper");
    assert_eq!(
        fs::read_to_string(upper.join("opt/bb/sub/f")).unwrap(),
        "made\n"
    );
    assert!(
        diff(&before, &snapshot(&layers)).is_empty(),
        "{suite}: the image's layers changed"
    );

    // Pipelines, and programs started from a static shell and the reverse.
    let run = c.busybox_sh(
        &[],
        "cat /etc/passwd | grep -c '^root:' | wc -l; \
         bash -c 'busybox cat /etc/debian_version'",
    );
    run.success();
    assert_eq!(run.stdout, format!("1\n{version}"), "{suite}: {run:#?}");
    let run = c.run(
        &[],
        &[
            "bash",
            "-c",
            "busybox sh -c 'cat /etc/debian_version; bash -c \"test -e /etc/hostname || echo gone\"'",
        ],
    );
    run.success();
    assert_eq!(run.stdout, format!("{version}gone\n"), "{suite}: {run:#?}");

    // Exit statuses and signals are the program's.
    c.busybox_sh(&[], "exit 7").failure(7);
    let status = c
        .command(&[], &["/bin/busybox", "sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(15), "{suite}: killed by SIGTERM");
    let mut child = c
        .command(&[], &["/bin/busybox", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().signal(), Some(2), "{suite}: SIGINT");

    // Fake root: its ids and owners, for the static program too.
    let run = c.busybox_sh(
        &["--root"],
        "id -u; id -g; touch /etc/owned && chown 12:34 /etc/owned && \
         stat -c %u:%g /etc/owned /etc/passwd",
    );
    run.success();
    assert_eq!(run.stdout, "0\n0\n12:34\n0:0\n", "{suite}: {run:#?}");
    let run = c.run(&["--root"], &["stat", "-c", "%u:%g", "/etc/owned"]);
    assert_eq!(run.stdout, "12:34\n", "{suite}: {run:#?}");

    // Without the trap nothing keeps it inside: refused, with the reason.
    c.run(&["--no-trap"], &["/bin/busybox", "true"])
        .failure(126)
        .stderr_has("statically linked");
}

#[test]
fn busybox_static_stays_inside_a_bookworm_container() {
    check("bookworm");
}

#[test]
fn busybox_static_stays_inside_a_trixie_container() {
    check("trixie");
}

#[test]
fn what_the_trap_cannot_serve_is_a_clear_error() {
    let c = Container::new("bookworm");
    let upper = c.env.store().join("containers/c/upper");
    let before = snapshot(&upper);
    let version = c.sh("cat /etc/debian_version").stdout;

    // A kernel or sandbox without seccomp filters: no trap, so a static
    // program is refused with the reason; dynamic ones still run.
    let no_seccomp = c.env.c_program("no_seccomp", &[]);
    let without = |command: &[&str]| {
        let mut run = c.env.command_as_user(&no_seccomp);
        run.arg(tool_dir().join("lpmx-exec"))
            .args(["c", "--"])
            .args(command);
        Run::from(run.output().expect("run no_seccomp"))
    };
    without(&["/bin/busybox", "true"])
        .failure(126)
        .stderr_has("statically linked")
        .stderr_has("refuses seccomp filters");
    let run = without(&["cat", "/etc/debian_version"]);
    run.success();
    assert_eq!(run.stdout, version);

    // A program's own filter stacks with the trap's; one that traps calls
    // with SIGSYS for itself cannot share it, and is stopped saying so.
    let own_filter = c.env.c_program("own_filter", &["-static"]);
    let own_filter = own_filter.to_str().unwrap();
    let run = c.run(&[], &[own_filter, "errno", "/etc/debian_version"]);
    run.success();
    assert_eq!(
        run.stdout,
        format!("uname=Operation not permitted\nread={version}")
    );
    c.run(&[], &[own_filter, "trap", "/etc/debian_version"])
        .failure(126)
        .stderr_has("seccomp filter of its own");

    // A truncated static program, and a corrupt one (an ELF header for
    // another machine): the reason, not a bus error.
    let whole = fs::read(own_filter).unwrap();
    let program = |name: &str, bytes: &[u8]| {
        let path = c.env.path().join(name);
        c.env.write_file(&path, bytes);
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let truncated = program("truncated", &whole[..whole.len() / 3]);
    c.run(&[], &[&truncated])
        .failure(126)
        .stderr_has("truncated");
    let mut corrupt = whole.clone();
    corrupt[18] = 0xb7; // e_machine: AArch64
    let corrupt = program("corrupt", &corrupt);
    c.run(&[], &[&corrupt])
        .failure(126)
        .stderr_has("not an x86_64 ELF program");

    assert!(
        diff(&before, &snapshot(&upper)).is_empty(),
        "the failed runs left something in the writable layer"
    );
}

#[test]
fn a_static_programs_threads_each_see_the_container_and_keep_their_errno() {
    let c = Container::new("bookworm");
    let program = c.env.c_program("threads", &["-static", "-pthread"]);
    let run = c.run(&[], &[program.to_str().unwrap()]);
    run.success();
    assert_eq!(run.stdout, "failures=0\n", "{run:#?}");
}

#[test]
fn a_rewritten_call_site_raises_no_signal_and_still_sees_the_container() {
    let c = Container::new("bookworm");
    let program = c.env.c_program("rewrite", &["-static", "-pthread"]);
    let program = program.to_str().unwrap();
    // Its site is rewritten after its first calls; every later call, from
    // four threads at once, goes through the trap's stub.
    let run = c.busybox_sh(&[], &format!("echo hi > /marker && {program}"));
    run.success();
    assert_eq!(
        run.stdout, "before=b8 after=e9 before12=b8 after12=e9 failures=0\n",
        "{run:#?}"
    );
    // Turned off, the site stays as it is and every call is trapped.
    let run = c.run(&["-e", "LPMX_TRAP_REWRITE=0"], &[program]);
    run.success();
    assert_eq!(
        run.stdout, "before=b8 after=b8 before12=b8 after12=b8 failures=0\n",
        "{run:#?}"
    );
    // The marker is the container's only.
    assert!(!std::path::Path::new("/marker").exists());
}

#[test]
fn an_image_files_stat_is_its_layer_files_own() {
    use std::os::unix::fs::MetadataExt;
    let c = Container::new("bookworm");
    // The index answers a lower file's lstat and statx (its build recorded
    // the layer file's attributes): every field but the access time must
    // be what lstat of the layer's file says. busybox's stat asks stat;
    // GNU stat (a dynamic program) asks statx, for the basic fields only
    // with this format, which libunion answers from the index.
    let busybox_format = "%n %s %Y %Z %h %b %f %i %d";
    let gnu_format = "%n %s %.9Y %.9Z %h %b %f %i %d %u %g %o";
    let busybox = c.busybox_sh(
        &[],
        &format!(
            "cd /usr/bin && busybox stat -c '{busybox_format}' * && cd /etc && busybox stat -c '{busybox_format}' *"
        ),
    );
    busybox.success();
    let gnu = c.sh(&format!(
        "cd /usr/bin && stat -c '{gnu_format}' * && cd /etc && stat -c '{gnu_format}' *"
    ));
    gnu.success();
    let layers: Vec<_> = fs::read_dir(c.env.store().join("layers"))
        .expect("read the store's layers")
        .map(|e| e.expect("a layer").path().join("root"))
        .collect();
    for (run, gnu) in [(&busybox, false), (&gnu, true)] {
        let mut compared = 0;
        let mut dir = "usr/bin";
        for line in run.stdout.lines() {
            let name = line.split(' ').next().unwrap();
            if dir == "etc" && (name == "hosts" || name == "resolv.conf") {
                continue; // the host's, bound in
            }
            if dir == "usr/bin"
                && !layers
                    .iter()
                    .any(|l| l.join(dir).join(name).symlink_metadata().is_ok())
            {
                dir = "etc";
            }
            let Some(meta) = layers
                .iter()
                .find_map(|l| l.join(dir).join(name).symlink_metadata().ok())
            else {
                continue; // made in the writable layer (none here) or a bind
            };
            let expected = if gnu {
                format!(
                    "{name} {} {}.{:09} {}.{:09} {} {} {:x} {} {} {} {} {}",
                    meta.size(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec(),
                    meta.nlink(),
                    meta.blocks(),
                    meta.mode(),
                    meta.ino(),
                    meta.dev(),
                    meta.uid(),
                    meta.gid(),
                    meta.blksize()
                )
            } else {
                format!(
                    "{name} {} {} {} {} {} {:x} {} {}",
                    meta.size(),
                    meta.mtime(),
                    meta.ctime(),
                    meta.nlink(),
                    meta.blocks(),
                    meta.mode(),
                    meta.ino(),
                    meta.dev()
                )
            };
            assert_eq!(line, expected, "{dir}/{name} (GNU stat: {gnu})");
            compared += 1;
        }
        assert!(compared > 100, "{run:#?}");
    }
}

#[test]
fn the_store_seen_through_a_bind_is_listed_as_it_is() {
    let c = Container::new("bookworm");
    // The store is in the container where a bind shows it (here the
    // host's /tmp), and lpmx passes its paths as they are: a writable
    // layer's directory there lists its own files, not the merged view
    // of the container directory it holds (/usr/local).
    let upper = c.env.store().join("containers/c/upper/usr/local");
    let run = c.busybox_sh(
        &[],
        &format!(
            "busybox touch /usr/local/made && busybox ls /usr/local > /dev/null && busybox ls {0} && busybox find {0}",
            upper.display()
        ),
    );
    run.success();
    assert_eq!(
        run.stdout,
        format!("made\n{0}\n{0}/made\n", upper.display()),
        "{run:#?}"
    );
}

#[test]
fn what_lookups_remember_follows_the_containers_changes() {
    // A static program (the trap) and a dynamic one (the preload), each in
    // a container of its own: both serve their lookups with libunion.
    for flags in [&["-static"][..], &[][..]] {
        let c = Container::new("bookworm");
        let program = c.env.c_program("lookups", flags);
        let run = c.run(&[], &[program.to_str().unwrap()]);
        assert_eq!(run.stdout, "failures=0\n", "{flags:?}: {run:#?}");
        run.success();
        // The layers are unchanged: the image's file is deleted in the
        // container only.
        let again = c.busybox_sh(
            &[],
            "test -e /usr/share/doc/base-files/copyright || echo gone",
        );
        again.success();
        assert_eq!(again.stdout, "gone\n", "{flags:?}");
    }
}

#[test]
fn attribute_and_statx_calls_answer_as_the_layer_files_do() {
    use std::os::unix::ffi::OsStrExt;
    // Inside, libunion answers what it may remember of files without
    // attributes, and statx of image files from the index (flags and mask
    // checked as the kernel does); each call is compared with the same call
    // on the layer's file, made outside by the same user. A static program
    // (the trap) and a dynamic one (the preload).
    let c = Container::new("bookworm");
    // The file given an attribute below comes last, after another file of
    // its layer.
    let paths = ["/etc/passwd", "/usr/bin", "/usr/bin/sh", "/usr/bin/env"];
    let stack: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(c.env.store().join("containers/c/stack.json")).expect("read the stack"),
    )
    .expect("parse the stack");
    let layers: Vec<std::path::PathBuf> = stack["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| std::path::Path::new(l["path"].as_str().expect("a layer path")).join("root"))
        .collect();
    let layer_file = |path: &str| {
        layers
            .iter()
            .map(|l| l.join(&path[1..]))
            .find(|f| f.symlink_metadata().is_ok())
            .expect("a layer file")
    };
    let host_paths: Vec<_> = paths.iter().map(|p| layer_file(p)).collect();
    let compare = |program: &std::path::Path, what: &str| {
        let inside = c.run(
            &[],
            &[
                program.to_str().unwrap(),
                paths[0],
                paths[1],
                paths[2],
                paths[3],
            ],
        );
        inside.success();
        let outside = Run::from(
            c.env
                .command_as_user(program)
                .args(&host_paths)
                .output()
                .expect("run the program outside"),
        );
        outside.success();
        assert_eq!(inside.stdout, outside.stdout, "{what}");
        assert!(inside.stdout.lines().count() > 30, "{inside:#?}");
    };
    for flags in [&["-static"][..], &[]] {
        let statx = c.env.c_program("statx", flags);
        compare(&statx, &format!("statx {flags:?}"));
    }
    let programs = [
        (c.env.c_program("xattrs", &["-static"]), "static"),
        (c.env.c_program("xattrs", &[]), "dynamic"),
    ];
    for (program, what) in &programs {
        compare(program, what);
    }
    // A layer file with an attribute (set here, where the file system
    // takes one) is asked each time: the index is built again and records it.
    let env = &host_paths[3];
    let name = c"user.lpmx";
    let path = std::ffi::CString::new(env.as_os_str().as_bytes()).unwrap();
    // SAFETY: C strings and a 3-byte value.
    let set =
        unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), c"yes".as_ptr().cast(), 3, 0) };
    if set != 0 {
        eprintln!("skipped: this file system takes no user attributes");
        return;
    }
    fs::remove_file(stack["index"].as_str().expect("the index path")).expect("remove the index");
    for (program, what) in &programs {
        compare(program, &format!("{what}, with an attribute"));
    }
    let inside = c.run(&[], &[programs[0].0.to_str().unwrap(), paths[3]]);
    assert!(inside.stdout.contains("user.lpmx get 3 0"), "{inside:#?}");
}
