//! A real Slurm cluster on this machine, for the tests: Debian's
//! `slurmctld` and `slurmd` (built with multiple-slurmd support, so one
//! slurmd per node), each node in its own UTS namespace with its own host
//! name (Open MPI names its shared-memory segments after it), `munged` for
//! authentication, everything on loopback ports and in a scratch directory.
//! The daemons run as root, as on a real cluster (slurmd starts each task as
//! the user who submitted it); the tests submit as the unprivileged test
//! user. Dropping the cluster stops it.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Env;

pub struct Slurm {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

/// `count` consecutive free loopback ports.
fn free_ports(count: usize) -> u16 {
    'search: for _ in 0..200 {
        let first = crate::registry::free_port();
        for offset in 0..count as u16 {
            let Some(port) = first.checked_add(offset) else {
                continue 'search;
            };
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue 'search;
            }
        }
        return first;
    }
    panic!("no {count} consecutive free ports");
}

/// Why the tests cannot start a cluster here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !crate::env::running_as_root() {
        return Some("starting slurmd needs root (CI runs the tests as root)".to_owned());
    }
    for program in ["slurmctld", "slurmd", "srun", "munged"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{program} is not installed (scripts/install-deps)"));
        }
    }
    None
}

impl Slurm {
    /// Starts a cluster of `nodes` nodes (`node1`...) of 2 CPUs each and
    /// waits until they are idle.
    pub fn start(nodes: usize) -> Slurm {
        let dir = tempfile::Builder::new()
            .prefix("lpmx-slurm-")
            .tempdir()
            .expect("slurm dir");
        let root = dir.path().to_owned();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["munge", "run", "state", "log"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::set_permissions(root.join("munge"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        let key: Vec<u8> = crate::image::noise(std::process::id().into(), 1024);
        let key_path = root.join("munge/munge.key");
        fs::write(&key_path, key).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o400)).unwrap();
        let socket = root.join("run/munge.socket");
        let mut slurm = Slurm {
            dir,
            daemons: Vec::new(),
        };
        let log = |name: &str| fs::File::create(root.join("log").join(name)).expect("log file");
        let munged = Command::new("munged")
            .arg("--foreground")
            .arg("--force")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key_path.display()))
            .arg(format!(
                "--log-file={}",
                root.join("log/munged.log").display()
            ))
            .arg(format!(
                "--pid-file={}",
                root.join("munge/munged.pid").display()
            ))
            .arg(format!(
                "--seed-file={}",
                root.join("munge/munged.seed").display()
            ))
            .stdout(log("munged.out"))
            .stderr(log("munged.err"))
            .spawn()
            .expect("start munged");
        slurm.daemons.push(munged);
        wait_for(|| socket.exists(), "munged's socket");

        let controller = free_ports(1);
        let first_node = free_ports(nodes);
        for node in 1..=nodes {
            for sub in ["spool", "tmpfs"] {
                fs::create_dir_all(root.join(sub).join(format!("node{node}"))).unwrap();
            }
        }
        let r = root.display();
        let conf = format!(
            "ClusterName=lpmxtest\n\
             SlurmctldHost=controller(127.0.0.1)\n\
             SlurmctldPort={controller}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={socket}\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             SelectType=select/cons_tres\n\
             SlurmdParameters=config_overrides\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             StateSaveLocation={r}/state\n\
             SlurmdSpoolDir={r}/spool/%n\n\
             TmpFS={r}/tmpfs/%n\n\
             SlurmctldPidFile={r}/run/slurmctld.pid\n\
             SlurmdPidFile={r}/run/slurmd.%n.pid\n\
             SlurmctldLogFile={r}/log/slurmctld.log\n\
             SlurmdLogFile={r}/log/slurmd.%n.log\n\
             NodeName=node[1-{nodes}] NodeHostname=localhost NodeAddr=127.0.0.1 \
             Port=[{first_node}-{last}] CPUs=2\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            socket = socket.display(),
            last = first_node + nodes as u16 - 1,
        );
        fs::write(slurm.conf(), conf).unwrap();
        let in_uts = |hostname: &str, command: &str| {
            Command::new("unshare")
                .args(["--uts", "sh", "-c"])
                .arg(format!("hostname {hostname} && exec {command}"))
                .stdout(log(&format!("{hostname}.out")))
                .stderr(log(&format!("{hostname}.err")))
                .spawn()
                .expect("start a Slurm daemon")
        };
        let conf_path = slurm.conf().display().to_string();
        slurm.daemons.push(in_uts(
            "controller",
            &format!("slurmctld -D -i -f {conf_path}"),
        ));
        for node in 1..=nodes {
            slurm.daemons.push(in_uts(
                &format!("node{node}"),
                &format!("slurmd -D -N node{node} -f {conf_path}"),
            ));
        }
        wait_for(
            || {
                Command::new("sinfo")
                    .args(["-h", "-o", "%D %T"])
                    .env("SLURM_CONF", slurm.conf())
                    .output()
                    .is_ok_and(|o| {
                        String::from_utf8_lossy(&o.stdout).trim() == format!("{nodes} idle")
                    })
            },
            "the nodes to be idle",
        );
        slurm
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// `srun ARGS` as `env`'s unprivileged user, with its store and home.
    pub fn srun(&self, env: &Env, args: &[&str]) -> Command {
        let mut command = env.command_as_user("srun");
        command
            .env("SLURM_CONF", self.conf())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The daemons' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for entry in fs::read_dir(self.dir.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let body = fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            text.push_str(&format!("== {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // slurmd's tasks and steps go with it: SIGTERM first, then whatever
        // is left.
        for daemon in self.daemons.iter().rev() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for daemon in self.daemons.iter_mut().rev() {
            while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}
