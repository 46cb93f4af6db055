//! What a job launcher (Slurm's srun, mpirun, a batch system) gives a
//! program through its environment, passed into the container.
//!
//! lpmx-exec starts a program with the image's environment, not the
//! host's: a host's `PATH`, `LD_LIBRARY_PATH` or `PYTHONPATH` would break
//! the image's programs. But an MPI rank that does not see its launcher's
//! variables runs as a one-rank job of its own, so the variables of the
//! known launchers pass in: those named by [`PREFIXES`] and [`NAMES`], and
//! whatever `--pass-env` names. They come after the image's `Env` and
//! before the container's environment file and `--env`, which override
//! them. The directories some of them name (the PMIx server's socket
//! directory, the job's `TMPDIR`) are shown inside at the same path.

use std::path::{Path, PathBuf};

use lpmx_core::container::Bind;

/// Name prefixes of the variables job launchers set for their tasks.
pub const PREFIXES: &[&str] = &[
    // Slurm, and the other batch systems' job variables.
    "SLURM_", "SLURMD_", "SRUN_", "SBATCH_", "SALLOC_", "PBS_", "LSB_", "FLUX_",
    // PMI and PMIx, the wire-up between launcher and MPI library.
    "PMI_", "PMIX_", // Open MPI, its runtime and its transports.
    "OMPI_", "OPAL_", "PRTE_", "ORTE_", "UCX_", "FI_", "PSM2_", "HFI_",
    // MPICH, its process manager, and Intel MPI.
    "MPICH_", "MPIR_", "HYDRA_", "I_MPI_", // OpenMP, as job scripts set it.
    "OMP_",   // Collective libraries over the GPUs the job was given.
    "NCCL_",
];

/// Single variables launchers set: the devices a task was given.
pub const NAMES: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "TMPDIR",
];

/// Variables that name a directory the launcher's processes talk through
/// (PMIx's server sockets and shared-memory files, the job's scratch):
/// shown inside at the same path when no bind shows them already.
pub const DIRECTORIES: &[&str] = &["PMIX_SERVER_TMPDIR", "PMIX_SYSTEM_TMPDIR", "TMPDIR"];

/// Whether `name` is passed in: a launcher's variable, or one `patterns`
/// (`--pass-env`: a name, or a prefix ending in `*`) names.
pub fn passes(name: &str, patterns: &[String], launchers: bool) -> bool {
    let launcher = launchers
        && (NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix)));
    launcher
        || patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
}

/// The host variables `host` passes in, in the host's order.
pub fn variables(
    host: impl IntoIterator<Item = (String, String)>,
    patterns: &[String],
    launchers: bool,
) -> Vec<(String, String)> {
    host.into_iter()
        // lpmx's own configuration is made afresh for every run.
        .filter(|(name, _)| !name.starts_with(lpmx_core::variables::PREFIX))
        .filter(|(name, _)| passes(name, patterns, launchers))
        .collect()
}

/// Binds for the directories the passed variables `env` name that exist
/// on the host and that no bind of `binds` shows at the same path.
pub fn directory_binds(env: &[(String, String)], binds: &[Bind]) -> Vec<Bind> {
    let mut extra: Vec<Bind> = Vec::new();
    for (name, value) in env {
        if !DIRECTORIES.contains(&name.as_str()) {
            continue;
        }
        let path = Path::new(value);
        if !path.is_absolute() || path == Path::new("/") || value.contains([':', '=']) {
            continue;
        }
        let shown = |b: &Bind| path.starts_with(&b.host) && path.starts_with(&b.container);
        if binds.iter().chain(&extra).any(shown) || !path.is_dir() {
            continue;
        }
        let path = PathBuf::from(path);
        extra.push(Bind {
            host: path.clone(),
            container: path,
        });
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(host: &str, container: &str) -> Bind {
        Bind {
            host: host.into(),
            container: container.into(),
        }
    }

    #[test]
    fn launcher_variables_and_named_ones_pass() {
        let host = [
            ("SLURM_PROCID", "3"),
            ("PMIX_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "8"),
            ("CUDA_VISIBLE_DEVICES", "0,1"),
            ("LD_LIBRARY_PATH", "/opt/host/lib"),
            ("PYTHONPATH", "/home/me/py"),
            ("MY_SETTING", "x"),
            ("LPMX_UPPER", "/elsewhere"),
            ("SLURMX", "not a launcher's"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(variables(host.clone(), &[], true)),
            [
                "SLURM_PROCID",
                "PMIX_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "CUDA_VISIBLE_DEVICES"
            ]
        );
        assert_eq!(
            names(variables(host.clone(), &["MY_SETTING".into()], false)),
            ["MY_SETTING"]
        );
        assert_eq!(
            names(variables(host, &["PY*".into(), "LPMX_*".into()], false)),
            ["PYTHONPATH"]
        );
    }

    #[test]
    fn directories_not_shown_yet_get_a_bind() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool/pmix.5.0");
        std::fs::create_dir_all(&spool).unwrap();
        let spool_text = spool.display().to_string();
        let env = [
            ("PMIX_SERVER_TMPDIR", spool_text.as_str()),
            ("PMIX_SYSTEM_TMPDIR", "/usr"),
            ("TMPDIR", "/nonexistent/scratch"),
            ("SLURM_SUBMIT_DIR", "/etc"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let binds = directory_binds(&env, &[bind("/usr", "/usr")]);
        assert_eq!(binds.len(), 1, "{binds:?}");
        assert_eq!(binds[0].host, spool);
        assert_eq!(binds[0].container, spool);
        // Shown already by a bind of a directory above it.
        let above = bind(dir.path().to_str().unwrap(), dir.path().to_str().unwrap());
        assert!(directory_binds(&env, &[above, bind("/usr", "/usr")]).is_empty());
        // A bind elsewhere in the container does not show it at its path.
        let moved = bind(dir.path().to_str().unwrap(), "/data");
        let binds = directory_binds(&env, &[moved, bind("/usr", "/usr")]);
        assert_eq!(binds.len(), 1, "{binds:?}");
        assert_eq!(binds[0].host, spool);
    }
}
