//! lpmx-exec --gpu with a fake NVIDIA driver: a shared library named like
//! the driver's in a host library directory, and a fake nvidia-smi.

use std::fs;
use std::path::Path;
use std::process::Command;

use lpmx_tests::containers::debian_container;
use lpmx_tests::{Env, Run};

fn gcc(args: &[&str], output: &Path, source: &Path) {
    let built = Command::new("gcc")
        .args(args)
        .arg("-o")
        .arg(output)
        .arg(source)
        .status()
        .expect("gcc");
    assert!(built.success(), "gcc {}", source.display());
}

const PROBE: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW);
    int (*version)(int *) = cuda ? (int (*)(int *))dlsym(cuda, "cuDriverGetVersion") : NULL;
    int v = 0;
    if (version && version(&v) == 0) printf("cuda %d\n", v); else printf("no cuda\n");
    printf("%s\n", dlopen("libfoo.so.1", RTLD_NOW) ? "foo injected" : "foo not injected");
    const char *devices = getenv("CUDA_VISIBLE_DEVICES");
    printf("devices %s\n", devices ? devices : "-");
    return 0;
}
"#;

#[test]
fn gpu_driver_libraries_and_tools_come_from_the_host() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);

    // The fake driver, in a host directory of its own (split from the tools).
    let driver = env.path().join("driver");
    fs::create_dir_all(&driver).unwrap();
    let source = env.path().join("cuda.c");
    fs::write(
        &source,
        "int cuDriverGetVersion(int *v) { *v = 12345; return 0; }\n",
    )
    .unwrap();
    gcc(
        &["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1"],
        &driver.join("libcuda.so.1"),
        &source,
    );
    gcc(
        &["-shared", "-fPIC"],
        &driver.join("libnvidia-ml.so.1"),
        &source,
    );
    gcc(&["-shared", "-fPIC"], &driver.join("libfoo.so.1"), &source);
    let tools = env.path().join("tools");
    fs::create_dir_all(&tools).unwrap();
    let host_file = env.path().join("host-only.txt");
    fs::write(&host_file, "host\n").unwrap();
    let smi = tools.join("nvidia-smi");
    fs::write(
        &smi,
        format!(
            "#!/bin/sh\necho fake nvidia-smi; cat {}\n",
            host_file.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut fs::metadata(&smi).unwrap().permissions(),
        0o755,
    );
    fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let probe_source = env.path().join("probe.c");
    fs::write(&probe_source, PROBE).unwrap();
    let probe = env.path().join("probe");
    gcc(&["-O2"], &probe, &probe_source);

    let run = |flags: &[&str], devices: Option<&str>, program: &Path| {
        let mut command = env.tool("lpmx-exec");
        command
            .env("LPMX_GPU_LIBRARY_PATH", &driver)
            .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
            .args(flags)
            .arg("c")
            .arg("--")
            .arg(program);
        if let Some(devices) = devices {
            command.env("NVIDIA_VISIBLE_DEVICES", devices);
        }
        Run::from(command.output().unwrap())
    };
    let with_gpu = run(&["--gpu"], None, &probe);
    with_gpu.success();
    assert_eq!(
        with_gpu.stdout, "cuda 12345\nfoo not injected\ndevices -\n",
        "{with_gpu:#?}"
    );
    let without = run(&[], None, &probe);
    assert_eq!(without.stdout, "no cuda\nfoo not injected\ndevices -\n");
    let none = run(&["--gpu"], Some("none"), &probe);
    assert_eq!(
        none.stdout, "no cuda\nfoo not injected\ndevices -\n",
        "NVIDIA_VISIBLE_DEVICES=none"
    );
    let some = run(&["--gpu"], Some("0,1"), &probe);
    assert_eq!(some.stdout, "cuda 12345\nfoo not injected\ndevices 0,1\n");
    // The driver's tool runs from the host (it sees the host's files).
    let smi_run = run(&["--gpu", "--no-bind", "/tmp"], None, &smi);
    smi_run.success();
    assert_eq!(smi_run.stdout, "fake nvidia-smi\nhost\n", "{smi_run:#?}");
    // Nothing host-specific went into the container.
    let upper = env.store().join("containers/c/upper");
    assert_eq!(
        fs::read_dir(upper).unwrap().count(),
        0,
        "the container changed"
    );
}
