//! umoci, the reference rootless unpacker the tests compare lpmx with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Env, Run};

/// Unpacks image `tag` of the OCI layout at `layout` with
/// `umoci unpack --rootless`, run as the test user as the tools are, into a
/// fresh bundle under `env`, and returns the bundle's `rootfs`.
///
/// The layout must be readable by the test user (as
/// [`crate::oci_layout::write_oci_layout`] makes it). Rootless umoci
/// cannot reproduce everything: device nodes become empty regular files
/// (it cannot mknod them), and everything is owned by the test user.
pub fn umoci_unpack_rootless(env: &Env, layout: &Path, tag: &str) -> PathBuf {
    static BUNDLES: AtomicUsize = AtomicUsize::new(0);
    // umoci creates the bundle itself, so its parent must be the user's.
    let parent = env
        .path()
        .join(format!("umoci-{}", BUNDLES.fetch_add(1, Ordering::Relaxed)));
    env.make_user_dir(&parent);
    let bundle = parent.join("bundle");
    let mut image = layout.as_os_str().to_owned();
    image.push(format!(":{tag}"));
    let run = Run::from(
        env.command_as_user("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(&image)
            .arg(&bundle)
            .output()
            .expect("run umoci (is the umoci package installed?)"),
    );
    assert_eq!(run.code, Some(0), "umoci unpack failed: {run:#?}");
    bundle.join("rootfs")
}
