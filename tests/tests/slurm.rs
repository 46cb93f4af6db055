//! Under a real Slurm (`lpmx_tests::slurm`: two nodes on loopback, started
//! as root as a site runs it), jobs submitted by an unprivileged user run
//! every task inside the container: plain tasks, ephemeral ones, and Open
//! MPI from the image under `srun --mpi=pmix` and under its own `mpirun`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use lpmx_tests::containers::debian_container;
use lpmx_tests::env::tool_dir;
use lpmx_tests::slurm::{Slurm, unavailable};
use lpmx_tests::{Env, Run};

fn cluster() -> Option<Slurm> {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(Slurm::start(2))
}

fn lpmx_exec() -> String {
    tool_dir().join("lpmx-exec").display().to_string()
}

/// `srun ARGS` as the test user, required to succeed (the daemons' logs
/// printed if not).
#[track_caller]
fn srun(slurm: &Slurm, env: &Env, args: &[&str]) -> Run {
    let run = Run::from(slurm.srun(env, args).output().expect("run srun"));
    assert_eq!(run.code, Some(0), "{run:#?}\n{}", slurm.logs());
    run
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// A file only the host has, removed at the end.
struct HostMarker(std::path::PathBuf);

impl HostMarker {
    fn plant() -> HostMarker {
        let path = Path::new("/opt").join(format!("lpmx-host-marker-{}", std::process::id()));
        fs::write(&path, "host\n").expect("plant the host's marker");
        HostMarker(path)
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn srun_starts_every_task_inside_the_container() {
    let Some(slurm) = cluster() else { return };
    let env = Env::new();
    let _registry = debian_container(&env, "bullseye", "c", &[]);
    let marker = HostMarker::plant();
    let exec = lpmx_exec();
    let script = format!(
        "echo $SLURM_PROCID $SLURM_NODEID $(hostname) $(cut -d. -f1 /etc/debian_version) \
         $(test -e {m} && echo host-seen || echo hidden)",
        m = marker.0.display()
    );
    let run = srun(
        &slurm,
        &env,
        &["-N2", "-n4", &exec, "c", "--", "/bin/sh", "-c", &script],
    );
    assert_eq!(
        sorted_lines(&run.stdout),
        [
            "0 0 node1 11 hidden",
            "1 0 node1 11 hidden",
            "2 1 node2 11 hidden",
            "3 1 node2 11 hidden"
        ],
        "{run:#?}"
    );

    // Tasks that write into the container at once: every line lands.
    let append = "echo rank-$SLURM_PROCID >> /var/log/ranks";
    srun(
        &slurm,
        &env,
        &["-N2", "-n4", &exec, "c", "--", "/bin/sh", "-c", append],
    );
    let ranks = env.run("lpmx-exec", ["c", "--", "cat", "/var/log/ranks"]);
    assert_eq!(
        sorted_lines(&ranks.success().stdout),
        ["rank-0", "rank-1", "rank-2", "rank-3"]
    );

    // Ephemeral tasks: each sees only its own writes, and they go.
    let private = "echo $SLURM_PROCID > /etc/mine; ls /etc/mine* | wc -l; cat /etc/mine";
    let run = srun(
        &slurm,
        &env,
        &[
            "-N2",
            "-n4",
            &exec,
            "--ephemeral",
            "c",
            "--",
            "/bin/sh",
            "-c",
            private,
        ],
    );
    let lines = sorted_lines(&run.stdout);
    assert_eq!(lines, ["0", "1", "1", "1", "1", "1", "2", "3"], "{run:#?}");
    env.run("lpmx-exec", ["c", "--", "test", "!", "-e", "/etc/mine"])
        .success();
}

#[test]
fn open_mpi_from_the_image_runs_under_srun_and_under_mpirun() {
    let Some(slurm) = cluster() else { return };
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "mpi", &[]);
    env.run(
        "lpmx-exec",
        [
            "--root",
            "mpi",
            "--",
            "/bin/sh",
            "-c",
            "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             -o Dpkg::Use-Pty=0 --no-install-recommends openmpi-bin libopenmpi-dev gcc libc6-dev \
             >/dev/null",
        ],
    )
    .success();
    // Built inside, with the image's mpicc.
    let src = env.path().join("src");
    env.make_user_dir(&src);
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
    for name in ["mpi_pingpong.c", "mpi_allreduce.c"] {
        env.write_file(&src.join(name), fs::read(sources.join(name)).unwrap());
    }
    let build = format!(
        "mpicc -O2 -o /opt/pingpong {s}/mpi_pingpong.c && mpicc -O2 -o /opt/allreduce {s}/mpi_allreduce.c",
        s = src.display()
    );
    env.run("lpmx-exec", ["mpi", "--", "/bin/sh", "-c", &build])
        .success();
    let exec = lpmx_exec();

    // Direct launch by Slurm, wired up through its PMIx server.
    let run = srun(
        &slurm,
        &env,
        &[
            "-N2",
            "-n4",
            "--mpi=pmix",
            &exec,
            "mpi",
            "--",
            "/opt/allreduce",
        ],
    );
    let lines = sorted_lines(&run.stdout);
    assert_eq!(lines.len(), 4, "{run:#?}");
    let hosts: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(hosts, BTreeSet::from(["node1", "node2"]), "{run:#?}");
    for (rank, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], format!("{rank}/4"), "{run:#?}");
        assert_eq!(fields[2], "10", "the sum of 1..=4: {run:#?}");
        assert!(fields[3].starts_with("12."), "bookworm's version: {run:#?}");
    }
    let run = srun(
        &slurm,
        &env,
        &[
            "-N2",
            "-n2",
            "--mpi=pmix",
            &exec,
            "mpi",
            "--",
            "/opt/pingpong",
            "200",
        ],
    );
    assert!(run.stdout.starts_with("latency_us="), "{run:#?}");

    // Open MPI's own launcher, inside the container on one node.
    let run = env.run(
        "lpmx-exec",
        [
            "mpi",
            "--",
            "mpirun",
            "--oversubscribe",
            "-np",
            "4",
            "/opt/allreduce",
        ],
    );
    run.success();
    let lines = sorted_lines(&run.stdout);
    assert_eq!(lines.len(), 4, "{run:#?}");
    assert!(
        lines.iter().all(|l| l.split(' ').nth(2) == Some("10")),
        "{run:#?}"
    );
}
