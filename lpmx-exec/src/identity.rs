//! You in the container's user database, as Apptainer does it: when the
//! container's `/etc/passwd` (or `/etc/group`) has no entry for the user
//! running lpmx-exec (or their groups), programs inside see a copy that
//! adds one, taken from the host's, so `whoami`, `id` and `ls -l` name
//! you. The copies (`containers/NAME/passwd`, `group`) are made again at
//! every run and shown at `/etc/passwd` and `/etc/group` like a bind; the
//! container's own files are left alone. Under `--root` the program is
//! root, whom every image has, so there is no copy.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use lpmx_core::container::{Bind, StackDocument};
use lpmx_core::view::View;

/// A host account, as `getpwuid` gives it.
struct Account {
    name: String,
    gecos: String,
    home: String,
    shell: String,
}

fn c_string(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a C string from getpwuid/getgrgid, read at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The host's entry for `uid`, else one from the environment (`USER`,
/// `HOME`), as a job started with a bare uid still has a name for.
fn host_account(uid: u32) -> Option<Account> {
    // SAFETY: getpwuid's result is read before any other call to it.
    let entry = unsafe { libc::getpwuid(uid) };
    if entry.is_null() {
        let name = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|n| !n.is_empty() && !n.contains(':') && !n.contains('\n'))?;
        return Some(Account {
            name,
            gecos: String::new(),
            home: std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
            shell: "/bin/sh".to_owned(),
        });
    }
    // SAFETY: a passwd entry from libc.
    let entry = unsafe { &*entry };
    Some(Account {
        name: c_string(entry.pw_name),
        gecos: c_string(entry.pw_gecos),
        home: c_string(entry.pw_dir),
        shell: c_string(entry.pw_shell),
    })
}

fn host_group_name(gid: u32) -> Option<String> {
    // SAFETY: as in host_account.
    let entry = unsafe { libc::getgrgid(gid) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: a group entry from libc.
    Some(c_string(unsafe { (*entry).gr_name }))
}

/// The gids of this process's groups: its group and supplementary ones.
fn host_groups() -> Vec<u32> {
    // SAFETY: getgid has no preconditions.
    let mut groups = vec![unsafe { libc::getgid() }];
    // SAFETY: asking for the count first, then filling a buffer that big.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if count > 0 {
        let mut list = vec![0 as libc::gid_t; count as usize];
        // SAFETY: list holds count entries.
        let got = unsafe { libc::getgroups(count, list.as_mut_ptr()) };
        for gid in list.into_iter().take(got.max(0) as usize) {
            if !groups.contains(&gid) {
                groups.push(gid);
            }
        }
    }
    groups
}

/// The ids (third field) a passwd- or group-format text has entries for.
fn ids_in(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|line| line.split(':').nth(2)?.parse().ok())
        .collect()
}

/// Writes `text` to `path` if it differs, by rename.
fn write(path: &Path, text: &str) -> io::Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let temp = path.with_extension(format!("{}.tmp", std::process::id()));
    fs::write(&temp, text)?;
    fs::rename(&temp, path)
}

/// The binds that show the container's user database with the running
/// user in it; none when it has them already (or cannot be read).
pub fn views(stack: &StackDocument, container_dir: &Path) -> Vec<Bind> {
    let Ok(view) = View::of_stack(stack) else {
        return Vec::new();
    };
    let read = |path: &str| {
        view.resolve(path, true)
            .ok()
            .and_then(|r| fs::read_to_string(r.host).ok())
    };
    let mut binds = Vec::new();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let groups = host_groups();
    if let Some(passwd) = read("/etc/passwd")
        && !ids_in(&passwd).contains(&uid)
        && let Some(account) = host_account(uid)
    {
        let shell_inside = view.resolve(&account.shell, true).is_ok();
        let mut text = passwd.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{}:x:{uid}:{}:{}:{}:{}\n",
            account.name,
            groups[0],
            account.gecos,
            account.home,
            if shell_inside {
                account.shell.as_str()
            } else {
                "/bin/sh"
            }
        ));
        let path = container_dir.join("passwd");
        if write(&path, &text).is_ok() {
            binds.push(Bind {
                host: path,
                container: PathBuf::from("/etc/passwd"),
            });
        }
        if let Some(group) = read("/etc/group") {
            let known = ids_in(&group);
            let mut text = group.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            let mut added = false;
            for gid in &groups {
                if known.contains(gid) {
                    continue;
                }
                let name = host_group_name(*gid)
                    .or_else(|| (*gid == groups[0]).then(|| account.name.clone()));
                if let Some(name) = name {
                    text.push_str(&format!("{name}:x:{gid}:{}\n", account.name));
                    added = true;
                }
            }
            let path = container_dir.join("group");
            if added && write(&path, &text).is_ok() {
                binds.push(Bind {
                    host: path,
                    container: PathBuf::from("/etc/group"),
                });
            }
        }
    }
    binds
}
