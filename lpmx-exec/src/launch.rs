//! Everything lpmx-exec decides before handing over to libunion.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::container::{Bind, EnvFile, HostPrograms, StackDocument};
use lpmx_core::libraries::{LIBRARY_DIRS, farm_path};
use lpmx_core::variables;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host paths every container sees unless turned off (`--no-bind`), as
/// HPC container tools do: devices, kernel interfaces, scratch space, the
/// user's home, and the host's name resolution (images carry no
/// `/etc/hosts` or `/etc/resolv.conf`: Docker provides them at run time,
/// and without them `localhost` and every host name fail to resolve).
pub const DEFAULT_BINDS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    "home",
    "/etc/hosts",
    "/etc/resolv.conf",
];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "invalid --bind {0:?}: expected absolute paths HOST:CONTAINER, or PATH, without ':' or '=' inside"
    )]
    BadBind(String),
    #[error("invalid --env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("cannot read {path}: {source}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image defines no entrypoint or command: give one after --")]
    NoCommand,
    #[error("cannot find libunion.so next to lpmx-exec ({0}); set LPMX_LIBUNION to its path")]
    NoLibunion(PathBuf),
    #[error("cannot load {path}: {why}")]
    Load { path: PathBuf, why: String },
    #[error("cannot enter the working directory {dir} in the container: {source}")]
    Workdir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} contains a NUL byte")]
    Nul(String),
    #[error("store path {0:?} contains ':': LPMX_STORE, which the preload reads, is ':'-separated")]
    StorePath(std::ffi::OsString),
    #[error(transparent)]
    Ephemeral(#[from] crate::ephemeral::EphemeralError),
    #[error("cannot make the host library directory in {path}: {source}")]
    HostLibs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for LaunchError {
    fn exit(&self) -> Exit {
        match self {
            LaunchError::BadBind(_)
            | LaunchError::BadEnv(_)
            | LaunchError::NoCommand
            | LaunchError::Nul(_)
            | LaunchError::StorePath(_) => Exit::Usage,
            LaunchError::EnvFile { .. }
            | LaunchError::NoLibunion(_)
            | LaunchError::Load { .. }
            | LaunchError::HostLibs { .. }
            | LaunchError::Ephemeral(_) => Exit::IoErr,
            LaunchError::Workdir { .. } => Exit::NoInput,
            LaunchError::Exec { .. } => Exit::Failure,
        }
    }
}

impl LaunchError {
    /// What a shell would exit with: 127 for a program not found, 126 for
    /// one that cannot run.
    pub fn shell_status(&self) -> Option<u8> {
        match self {
            LaunchError::Exec { source, .. } => Some(match source.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => 127,
                _ => 126,
            }),
            _ => None,
        }
    }
}

/// What the user asked for on the command line.
#[derive(Debug, Default)]
pub struct Request {
    pub command: Vec<String>,
    pub workdir: Option<String>,
    pub binds: Vec<String>,
    pub no_binds: Vec<String>,
    pub env: Vec<String>,
    pub root: bool,
    pub gpu: bool,
    /// Run without the system-call trap (the preload alone).
    pub no_trap: bool,
    /// Host variables passed in besides the launchers' (`--pass-env`).
    pub pass_env: Vec<String>,
    /// Keep the job launchers' variables out (`--no-launcher-env`).
    pub no_launcher_env: bool,
    /// Writes go to a private writable layer, removed at exit.
    pub ephemeral: bool,
}

/// `HOST:CONTAINER` or `PATH`.
pub fn parse_bind(spec: &str) -> Result<Bind, LaunchError> {
    let (host, container) = spec.split_once(':').unwrap_or((spec, spec));
    let valid = |p: &str| p.starts_with('/') && !p.contains([':', '=']) && p != "/";
    if !valid(host) || !valid(container) {
        return Err(LaunchError::BadBind(spec.to_owned()));
    }
    Ok(Bind {
        host: PathBuf::from(host),
        container: PathBuf::from(container),
    })
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h != Path::new("/"))
}

/// The binds of one run: the defaults not turned off, the container's,
/// then the command line's (a later one for the same place wins).
pub fn binds(stack: &StackDocument, request: &Request) -> Result<Vec<Bind>, LaunchError> {
    let mut all: Vec<Bind> = Vec::new();
    for default in DEFAULT_BINDS {
        if request.no_binds.iter().any(|n| n == default || n == "all") {
            continue;
        }
        let container = if *default == "home" {
            match home() {
                Some(home) => home,
                None => continue,
            }
        } else {
            PathBuf::from(default)
        };
        if container.exists() {
            all.push(Bind {
                host: container.clone(),
                container,
            });
        }
    }
    all.extend(stack.binds.iter().cloned());
    // Host programs are seen at their container paths (a shell's own PATH
    // search finds them); libunion runs them as host processes.
    let programs =
        HostPrograms::read(&HostPrograms::path(stack)).map_err(|source| LaunchError::EnvFile {
            path: HostPrograms::path(stack),
            source,
        })?;
    all.extend(
        programs
            .programs
            .into_iter()
            .map(|(container, host)| Bind { host, container }),
    );
    for spec in &request.binds {
        all.push(parse_bind(spec)?);
    }
    let mut seen = BTreeMap::new();
    for (i, bind) in all.iter().enumerate() {
        seen.insert(bind.container.clone(), i);
    }
    let keep: Vec<usize> = seen.into_values().collect();
    // A bind's host path is taken as the file it names, as mount(8) takes
    // a source (systemd-resolved's /etc/resolv.conf is a link to a host
    // path): inside, its top is that file, not a link.
    let mut result: Vec<Bind> = keep
        .into_iter()
        .map(|i| Bind {
            host: all[i]
                .host
                .canonicalize()
                .unwrap_or_else(|_| all[i].host.clone()),
            container: all[i].container.clone(),
        })
        .collect();
    result.sort_by(|a, b| a.container.cmp(&b.container));
    Ok(result)
}

/// The program's environment: the image's, then the host variables
/// `passed` (`crate::launcher`), then the container's environment file,
/// then `--env`; `PATH`, `HOME` and `TERM` default to sensible values,
/// `USER` and `LOGNAME` come from the invoking user.
pub fn environment(
    stack: &StackDocument,
    request: &Request,
    passed: &[(String, String)],
) -> Result<Vec<(String, String)>, LaunchError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    };
    for entry in &stack.config.env {
        if let Some((key, value)) = entry.split_once('=') {
            set(key, value);
        }
    }
    for (key, value) in passed {
        set(key, value);
    }
    let file = EnvFile::read(&stack.env_file).map_err(|source| LaunchError::EnvFile {
        path: stack.env_file.clone(),
        source,
    })?;
    for (key, value) in file.vars {
        set(&key, &value);
    }
    for entry in &request.env {
        let (key, value) = entry
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| LaunchError::BadEnv(entry.clone()))?;
        set(key, value);
    }
    let host = |name: &str| std::env::var(name).ok();
    let defaults = [
        ("PATH", Some(DEFAULT_PATH.to_owned())),
        (
            "HOME",
            home()
                .map(|h| h.display().to_string())
                .or(Some("/".to_owned())),
        ),
        ("TERM", host("TERM").or(Some("xterm".to_owned()))),
        ("USER", host("USER")),
        ("LOGNAME", host("LOGNAME")),
    ];
    for (key, value) in defaults {
        if let Some(value) = value
            && !env.iter().any(|(k, _)| k == key)
        {
            env.push((key.to_owned(), value));
        }
    }
    Ok(env)
}

/// The command to run: the user's, else the image's entrypoint and cmd.
pub fn command(stack: &StackDocument, request: &Request) -> Result<Vec<String>, LaunchError> {
    if !request.command.is_empty() {
        return Ok(request.command.clone());
    }
    let mut command = stack.config.entrypoint.clone().unwrap_or_default();
    command.extend(stack.config.cmd.clone().unwrap_or_default());
    if command.is_empty() {
        return Err(LaunchError::NoCommand);
    }
    Ok(command)
}

/// Where libunion.so is: `$LPMX_LIBUNION`, next to lpmx-exec, or in
/// `../lib/lpmx/` from it (an installed layout).
pub fn find_libunion() -> Result<PathBuf, LaunchError> {
    if let Some(path) = std::env::var_os("LPMX_LIBUNION") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join("libunion.so"), dir.join("../lib/lpmx/libunion.so")];
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(std::fs::canonicalize(candidate).unwrap_or(candidate.clone()));
        }
    }
    Err(LaunchError::NoLibunion(candidates[0].clone()))
}

/// Where lpmx-loader (the system-call trap's loader) is: `$LPMX_LOADER`,
/// else beside libunion.so. None when it is not there: programs then run
/// without the trap.
pub fn find_loader(libunion: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variables::LOADER.name).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let candidate = libunion.parent()?.join("lpmx-loader");
    candidate.is_file().then_some(candidate)
}

fn c_string(bytes: Vec<u8>, what: &str) -> Result<CString, LaunchError> {
    CString::new(bytes).map_err(|_| LaunchError::Nul(what.to_owned()))
}

/// The directory the program starts in: `--workdir`; else the current
/// directory when a bind shows it inside; else the image's `WorkingDir`;
/// else `/`.
pub fn workdir(stack: &StackDocument, request: &Request, binds: &[Bind]) -> String {
    if let Some(dir) = &request.workdir {
        return dir.clone();
    }
    if let Ok(cwd) = std::env::current_dir() {
        for bind in binds {
            if let Ok(rest) = cwd.strip_prefix(&bind.host) {
                return bind.container.join(rest).display().to_string();
            }
        }
    }
    stack
        .config
        .workdir
        .clone()
        .unwrap_or_else(|| "/".to_owned())
}

/// Runs the request in the container of `stack`; returns only on failure.
pub fn exec(
    store: &lpmx_core::Store,
    stack: &StackDocument,
    request: &Request,
) -> Result<std::convert::Infallible, LaunchError> {
    let mut binds = binds(stack, request)?;
    let private = if request.ephemeral {
        Some(crate::ephemeral::prepare(
            stack,
            &crate::ephemeral::base_dir(),
        )?)
    } else {
        None
    };
    let own_dir = match &private {
        Some(private) => Some(private.dir.as_path()),
        None => stack.upper.parent(),
    };
    if !request.root
        && let Some(own_dir) = own_dir
    {
        // You in the container's /etc/passwd and /etc/group.
        binds.extend(crate::identity::views(stack, own_dir));
    }
    let passed = crate::launcher::variables(
        std::env::vars(),
        &request.pass_env,
        !request.no_launcher_env,
    );
    binds.extend(crate::launcher::directory_binds(&passed, &binds));
    let mut env = environment(stack, request, &passed)?;
    let mut host_libraries = crate::host_libs::bound(&binds);
    let mut host_exec = Vec::new();
    if request.gpu && !crate::gpu::disabled() {
        // A library bound by hand wins over the driver's of that name.
        for (name, path) in crate::gpu::find_libraries() {
            host_libraries.entry(name).or_insert(path);
        }
        for program in crate::gpu::find_programs() {
            binds.push(Bind {
                host: program.clone(),
                container: program.clone(),
            });
            host_exec.push(program.display().to_string());
        }
        if let Some(devices) = crate::gpu::visible_devices()
            && !env.iter().any(|(k, _)| k == "CUDA_VISIBLE_DEVICES")
        {
            env.push(("CUDA_VISIBLE_DEVICES".to_owned(), devices));
        }
    }
    let host_libs = if host_libraries.is_empty() {
        PathBuf::new()
    } else {
        crate::host_libs::library_dir(store, &host_libraries).map_err(|source| {
            LaunchError::HostLibs {
                path: crate::host_libs::parent_dir(store),
                source,
            }
        })?
    };
    let command = command(stack, request)?;
    let workdir = workdir(stack, request, &binds);
    let libunion = find_libunion()?;

    let binds_var = binds
        .iter()
        .map(|b| format!("{}={}", b.host.display(), b.container.display()))
        .collect::<Vec<_>>()
        .join(":");
    // Containers of images unpacked before lpmx had library directories
    // search each layer instead.
    let farm = farm_path(&stack.index);
    let farm = if farm.is_dir() { farm } else { PathBuf::new() };
    // The container's own, once its writable layer has libraries; should
    // it fail (a read-only container directory), libunion searches the
    // writable layer's directories as before.
    let container_farm = if private.is_some() {
        PathBuf::new()
    } else {
        lpmx_core::libraries::refresh_container_farm(stack)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let tools = std::env::current_exe()
        .ok()
        .and_then(|exe| std::fs::canonicalize(exe).ok())
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let host_programs = HostPrograms::path(stack);
    let loader = find_loader(&libunion).unwrap_or_default();
    let store_list = std::env::join_paths(store.roots()).map_err(|_| {
        let named = store
            .roots()
            .find(|root| root.as_os_str().as_bytes().contains(&b':'));
        LaunchError::StorePath(named.unwrap_or(store.root()).as_os_str().to_owned())
    })?;
    let config: [(&str, OsString); 16] = [
        // The trap leaves paths under the stores to the host.
        (variables::STORE.name, store_list),
        (variables::LOADER.name, loader.into_os_string()),
        (
            variables::TRAP.name,
            if request.no_trap { "0" } else { "" }.into(),
        ),
        (variables::HOST_LIBS.name, host_libs.into_os_string()),
        (variables::HOST_EXEC.name, host_exec.join(":").into()),
        (
            variables::HOST_PROGRAMS.name,
            host_programs.into_os_string(),
        ),
        (variables::TOOLS.name, tools.into_os_string()),
        (
            variables::ROOT.name,
            if request.root { "1" } else { "" }.into(),
        ),
        (
            variables::ENV_FILE.name,
            stack.env_file.clone().into_os_string(),
        ),
        (variables::UPPER.name, stack.upper.clone().into_os_string()),
        (variables::INDEX.name, stack.index.clone().into_os_string()),
        (variables::BINDS.name, binds_var.into()),
        (variables::LIBDIRS.name, LIBRARY_DIRS.join(":").into()),
        (variables::LIBS.name, farm.into_os_string()),
        (
            variables::CONTAINER_LIBS.name,
            container_farm.into_os_string(),
        ),
        (variables::LIB.name, libunion.clone().into_os_string()),
    ];
    // libunion reads its configuration from this process's environment
    // when it loads, and passes it on to the program.
    // Shown where a bind needs a directory the container lacks; without
    // it (a read-only container directory) such a bind is not reached.
    let upper = private.as_ref().map_or(&stack.upper, |p| &p.upper);
    let _ = lpmx_core::container::make_empty_dir(upper);
    let private_config = private.as_ref().map(crate::ephemeral::config);
    for (key, value) in config.iter().chain(private_config.iter().flatten()) {
        // SAFETY: lpmx-exec is single-threaded.
        unsafe { std::env::set_var(key, value) };
    }
    // Rust ignores SIGPIPE for lpmx-exec itself, and an ignored signal
    // stays ignored across exec: the program gets the default back, so
    // `yes | head -1` ends quietly, as it does outside.
    // SAFETY: resetting a disposition; single-threaded.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Some(private) = &private {
        crate::ephemeral::supervise(private)?;
    }
    let library = Library::open(&libunion)?;
    let dir = c_string(workdir.clone().into_bytes(), "the working directory")?;
    // SAFETY: libunion's chdir takes a C path.
    if unsafe { (library.chdir)(dir.as_ptr()) } != 0 {
        return Err(LaunchError::Workdir {
            dir: workdir,
            source: std::io::Error::last_os_error(),
        });
    }
    let argv: Vec<CString> = command
        .iter()
        .map(|a| c_string(a.clone().into_bytes(), "an argument"))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| c_string(format!("{k}={v}").into_bytes(), "an environment value"))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: null-terminated arrays of C strings that outlive the call.
    unsafe { (library.exec)(argv_ptrs[0], argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(LaunchError::Exec {
        program: command[0].clone(),
        source: std::io::Error::last_os_error(),
    })
}

type ExecFn = unsafe extern "C" fn(
    *const libc::c_char,
    *const *const libc::c_char,
    *const *const libc::c_char,
) -> libc::c_int;
type ChdirFn = unsafe extern "C" fn(*const libc::c_char) -> libc::c_int;

/// libunion loaded privately (RTLD_LOCAL): its functions are called by
/// name and do not replace lpmx-exec's own.
struct Library {
    exec: ExecFn,
    chdir: ChdirFn,
}

impl Library {
    fn open(path: &Path) -> Result<Library, LaunchError> {
        let load_error = |why: String| LaunchError::Load {
            path: path.to_owned(),
            why,
        };
        let c_path = c_string(path.as_os_str().as_bytes().to_vec(), "the libunion path")?;
        // SAFETY: dlopen of a path; errors come back from dlerror.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(load_error(dl_error()));
        }
        let symbol = |name: &std::ffi::CStr| {
            // SAFETY: handle is a loaded library.
            let found = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if found.is_null() {
                Err(load_error(format!(
                    "{} is missing: {}",
                    name.to_string_lossy(),
                    dl_error()
                )))
            } else {
                Ok(found)
            }
        };
        let exec = symbol(c"lpmx_exec")?;
        let chdir = symbol(c"chdir")?;
        // SAFETY: libunion defines these with exactly these signatures.
        unsafe {
            Ok(Library {
                exec: std::mem::transmute::<*mut libc::c_void, ExecFn>(exec),
                chdir: std::mem::transmute::<*mut libc::c_void, ChdirFn>(chdir),
            })
        }
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a C string.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: a C string from dlerror.
    let bytes = unsafe { std::ffi::CStr::from_ptr(message) }
        .to_bytes()
        .to_vec();
    OsString::from_vec(bytes).to_string_lossy().into_owned()
}
