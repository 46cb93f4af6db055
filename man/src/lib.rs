//! The man pages in `man/`, generated from the tools' clap definitions and
//! from lpmx-core's document types, so they cannot say something the code
//! does not do, and the shell completions, from the same definitions.
//! `cargo run -p lpmx-man` writes them; a test checks that the committed
//! files match.

use std::path::{Path, PathBuf};

use lpmx_core::Digest;
use lpmx_core::document::{Document, ImageDocument, LayerBlob, LayersDocument, UnpackedLayer};
use lpmx_core::layer::{Device, DeviceKind, EntryMeta, LayerMeta};
use lpmx_core::oci::{RunConfig, media};

/// Every tool's CLI definition, with the plain package version:
/// `--version` adds the commit, which would change the generated files
/// with every commit.
fn commands() -> Vec<clap::Command> {
    [
        lpmx_pull::cli::command(),
        lpmx_unpack::cli::command(),
        lpmx_mkroot::cli::command(),
        lpmx_exec::cli::command(),
        lpmx_env::cli::command(),
        lpmx_pack::cli::command(),
    ]
    .into_iter()
    .map(|command| command.version(lpmx_core::cli::PACKAGE_VERSION))
    .collect()
}

/// Every generated file: the man pages, then the shell completions, each
/// with its path under `man/`.
pub fn generated() -> Vec<(PathBuf, String)> {
    let mut files = pages();
    files.extend(completions());
    files
}

/// Every page: its path under `man/` and its roff text.
pub fn pages() -> Vec<(PathBuf, String)> {
    let mut pages = Vec::new();
    for command in commands() {
        let name = command.get_name().to_owned();
        let mut roff = Vec::new();
        clap_mangen::Man::new(command)
            .section("1")
            .manual("lpmx manual")
            .source(concat!("lpmx ", env!("CARGO_PKG_VERSION")))
            .render(&mut roff)
            .expect("render man page");
        let mut text = String::from_utf8(roff).expect("roff is UTF-8");
        text.push_str(".SH SEE ALSO\nlpmx(7)\n");
        pages.push((PathBuf::from(format!("man1/{name}.1")), text));
    }
    pages.push((PathBuf::from("man7/lpmx.7"), overview()));
    pages
}

/// Every tool's completions for bash, zsh and fish, under `completions/`
/// in the directory layout each shell loads from (scripts/setup installs
/// them into `share/bash-completion/completions`, `share/zsh/site-functions`
/// and `share/fish/vendor_completions.d`).
pub fn completions() -> Vec<(PathBuf, String)> {
    use clap_complete::Shell;
    let mut files = Vec::new();
    for mut command in commands() {
        let name = command.get_name().to_owned();
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, &name, &mut script);
            let script = String::from_utf8(script).expect("completions are UTF-8");
            files.push((PathBuf::from("completions").join(file), script));
        }
    }
    files
}

/// The directory the generated files live in: this crate's own.
pub fn man_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example_image_document() -> String {
    let store = "/home/user/.local/share/lpmx";
    let blob = |d: &Digest| PathBuf::from(format!("{store}/blobs/sha256/{}", d.hex()));
    let config = Digest::of(b"config");
    let layer = Digest::of(b"layer");
    let document = ImageDocument {
        kind: ImageDocument::KIND.to_owned(),
        version: ImageDocument::VERSION,
        reference: "docker.io/library/debian:bookworm".to_owned(),
        registry: "docker.io".to_owned(),
        repository: "library/debian".to_owned(),
        tag: Some("bookworm".to_owned()),
        digest: Digest::of(b"index"),
        manifest_digest: Digest::of(b"manifest"),
        platform: "linux/amd64".parse().expect("platform"),
        config_path: blob(&config),
        config_digest: config,
        config: RunConfig {
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ],
            cmd: Some(vec!["bash".to_owned()]),
            entrypoint: None,
            workdir: None,
            user: None,
        },
        layers: vec![LayerBlob {
            path: blob(&layer),
            digest: layer,
            diff_id: Digest::of(b"tar"),
            size: 49_582_080,
            media_type: media::DOCKER_LAYER_GZIP.to_owned(),
        }],
    };
    serde_json::to_string_pretty(&document).expect("json")
}

fn example_layers_document() -> String {
    let diff_id = Digest::of(b"tar");
    let document = LayersDocument {
        kind: LayersDocument::KIND.to_owned(),
        version: LayersDocument::VERSION,
        reference: "docker.io/library/debian:bookworm".to_owned(),
        manifest_digest: Digest::of(b"manifest"),
        config_digest: Digest::of(b"config"),
        platform: "linux/amd64".parse().expect("platform"),
        config: RunConfig {
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ],
            cmd: Some(vec!["bash".to_owned()]),
            ..RunConfig::default()
        },
        layers: vec![UnpackedLayer {
            path: PathBuf::from(format!(
                "/home/user/.local/share/lpmx/layers/{}",
                diff_id.hex()
            )),
            diff_id,
        }],
    };
    serde_json::to_string_pretty(&document).expect("json")
}

fn example_layer_meta() -> String {
    let mut meta = LayerMeta::new();
    meta.diff_id = Some(Digest::of(b"tar"));
    meta.whiteouts
        .insert("var/cache/apt/pkgcache.bin".to_owned());
    meta.opaque.insert("etc/apt/sources.list.d".to_owned());
    meta.entries.insert(
        "usr/bin/passwd".to_owned(),
        EntryMeta {
            mode: Some(0o4755),
            ..EntryMeta::default()
        },
    );
    meta.entries.insert(
        "etc/shadow".to_owned(),
        EntryMeta {
            gid: Some(42),
            ..EntryMeta::default()
        },
    );
    meta.entries.insert(
        "dev/null".to_owned(),
        EntryMeta {
            device: Some(Device {
                kind: DeviceKind::Char,
                major: 1,
                minor: 3,
            }),
            ..EntryMeta::default()
        },
    );
    serde_json::to_string_pretty(&meta).expect("json")
}

/// Escapes text for a roff no-fill block.
fn roff_literal(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e");
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

fn overview() -> String {
    format!(
        r#".TH LPMX 7 "" "lpmx {version}" "lpmx manual"
.SH NAME
lpmx \- rootless containers from Docker/OCI images, as a pipeline of small tools
.SH SYNOPSIS
.nf
lpmx\-pull debian:bookworm | lpmx\-unpack | lpmx\-mkroot dev
lpmx\-exec dev \-\- bash
.fi
.SH DESCRIPTION
lpmx runs Docker/OCI images as an ordinary user: no root, no setuid
helper, no user namespaces, nothing installed by an administrator.
Each tool does one step, reads JSON or plain files and writes JSON, so
steps compose in shell pipelines and Makefiles.
.TP
.B lpmx\-pull REF
fetches an image's manifest, config and layers into the store and prints
an image document.
.TP
.B lpmx\-unpack [SOURCE]
reads an image document (or imports a docker\-archive, OCI layout or OCI
layout tar), unpacks each layer once into the store and prints a layers
document.
.TP
.B lpmx\-mkroot NAME
creates a container from a layers document: a stack file naming the shared
layers, an empty writable layer and an environment file; \-\-list and
\-\-remove manage them.
.TP
.B lpmx\-exec NAME [\-\- CMD...]
runs a program inside a container as the invoking user: started by the
image's own dynamic loader (so on the image's C library), with libunion
preloaded.
.TP
.B lpmx\-env NAME set|unset|list
changes a container's environment file, applied by libunion at every exec
inside the container: programs started afterwards see the change, even
those started by a shell that was already running.
.TP
.B lpmx\-pack NAME
writes a container and its image as one checked stream, which
lpmx\-unpack turns back into the container on another host
(\fBlpmx\-pack dev | ssh host lpmx\-unpack\fR); or, with \-\-oci or
\-\-docker\-archive, commits the writable layer as a new image layer and
exports the image for skopeo, umoci, podman and docker.
.SH RUNNING PROGRAMS
libunion.so, an LD_PRELOAD library, shows each process its container:
every path resolves through the writable layer, then the image's layers
top to bottom, honouring whiteouts and opaque directories; symlinks resolve
inside the container; directory listings merge the layers. Lookups in the
image's layers are binary searches in the image's index, mapped once per
process, so they cost the same for one layer or a hundred. Every exec goes
back through the image's loader with libunion preloaded again, even after
\fBenv \-i\fR. A statically linked program cannot be kept inside the
container by a preload library: it is refused (exit 126) rather than run
against the host's files. Programs that make system calls directly
(Go binaries, for instance) see the host's files.
.PP
Every change lands in the container's writable layer: a file of the image
is copied up (bytes, holes, mode, times) before its first change; deleting
or renaming away an image path records a whiteout in
containers/NAME/upper.whiteouts; renaming a directory of the image fails
with EXDEV, as on overlayfs, and mv copies instead. The image's layers are
never written.
.PP
With \fBlpmx\-exec \-\-root\fR, programs see themselves as root (fake
root, for package managers): the set*id family changes remembered ids by
the kernel's rules; chown and device nodes are recorded in
containers/NAME/upper.owners (by inode) instead of done, and every later
run reports them; the image's files report the owners and modes the
image records. Without \-\-root programs see the real ids.
.SH THE STORE
All tools share one store: \fB$LPMX_HOME\fR, else \fB$XDG_DATA_HOME/lpmx\fR,
else \fB~/.local/share/lpmx\fR.
.PP
.nf
blobs/sha256/<hex>     compressed blobs, manifests and configs, by digest
layers/<diffid\-hex>/   unpacked layers: root/ and meta.json
indexes/<hex>          the index of one image's stack of layers
indexes/<hex>.libs/    that image's shared libraries, one symlink each
containers/<name>/     containers: stack.json, upper/, upper.gen,
                       upper.whiteouts, upper.owners, env
tmp/                   partial downloads; never read as content
locks/                 lock files
version                the store format (1)
.fi
.PP
Entries outside tmp/ appear only by atomic rename of complete, verified
files and never change afterwards. Tools writing the same entry take its
lock in locks/, so any number of tools may share one store. An interrupted
download leaves tmp/<hex>.partial, from which the next pull resumes.
.PP
\fB$LPMX_STORE_PATH\fR (':'\-separated) names read\-only stores, a site's
or a group's, searched after this one for blobs, layers, indexes and
import records: what one has is used where it is, never copied, and
nothing is written to them. A new store is made 0700; layers unpacked into
a store shared on purpose (an empty file \fBshared\fR in its root) whose
root its group or others may enter are made readable by them (the image's
modes stay in meta.json). See docs/cluster.md.
.SH DOCUMENTS
Every document is a JSON object with a \fBkind\fR and a \fBversion\fR.
A tool given a document of the wrong kind, or of a newer version, refuses
it and names what it expected.
.SS lpmx.image (printed by lpmx\-pull, read by lpmx\-unpack)
.TP
.B reference, registry, repository, tag
the normalised image reference and its parts.
.TP
.B digest
digest of what the reference names (the index, for multi\-platform images).
.TP
.B manifest_digest, platform
the chosen platform's image manifest (kept in the store as a blob).
.TP
.B config_digest, config_path, config
the image config blob, and the parts of it that say how to run the image:
env, cmd, entrypoint, workdir, user.
.TP
.B layers
bottom to top: the blob's digest, size, media_type and store path, and the
diff_id (digest of the uncompressed tar) from the config's rootfs.
.PP
Example:
.PP
.nf
{example}.fi
.SS lpmx.layers (printed by lpmx\-unpack, read by lpmx\-mkroot)
.TP
.B reference, manifest_digest, config_digest, platform
the image the layers came from.
.TP
.B config
env, cmd, entrypoint, workdir and user from the image config.
.TP
.B layers
bottom to top: the diff_id and the layer directory in the store.
.PP
Example:
.PP
.nf
{layers_example}.fi
.SS lpmx.layer\-meta (layers/<diffid\-hex>/meta.json, written by lpmx\-unpack)
An ordinary user cannot give files other owners, setuid bits or device
numbers, so the layer's tree on disk holds the files with the user as owner,
every directory u+rwx and every file u+rw, and this document holds the rest.
Paths are relative to the layer root.
.TP
.B whiteouts
paths this layer deletes from the layers below (.wh.NAME entries); no
whiteout file is left on disk.
.TP
.B opaque
directories whose contents in lower layers are hidden (.wh..wh..opq).
.TP
.B entries
per path, what the disk does not show: \fBmode\fR (the original
permission bits, when they differ from the file on disk), \fBuid\fR and
\fBgid\fR (when not 0; unlisted entries are owned by 0:0),
\fBdevice\fR (kind char or block, major, minor; the file on disk is
empty) and \fBxattrs\fR that could not be set (values base64).
.PP
Example:
.PP
.nf
{meta_example}.fi
.SS lpmx.stack (containers/<name>/stack.json, printed by lpmx\-mkroot)
.TP
.B name, reference, manifest_digest, config_digest, platform, config
the container and the image it was made from.
.TP
.B layers
the image's unpacked layers, bottom to top (diff_id and directory), shared
with every other container of the store.
.TP
.B upper, env_file, index
the container's own writable layer and environment file, and the index of
its layers (shared by the image's containers, built by lpmx\-unpack):
every path of the merged image, sorted, with its layer and attributes, for
lookups without system calls (format in lpmx_core::index).
.TP
.B binds
host directories seen inside the container: host and container paths.
.TP
.B created
seconds since the epoch.
.PP
\fBlpmx\-mkroot \-\-list \-\-json\fR prints an \fBlpmx.containers\fR
document: \fBcontainers\fR, a list of stack documents.
.SS lpmx.pack (the first record of an lpmx\-pack stream)
.TP
.B name, reference, manifest_digest, config_digest, platform, config
the container on the source host and its image.
.TP
.B layers
the image's layers, bottom to top: diff_id, the blob's digest, media type
and size; \fBlayers_included\fR says whether their blobs follow.
.TP
.B env, host_programs, whiteouts
the container's environment file, host programs file and whiteouts file,
as text.
.PP
The stream: the line \fBLPMX\-PACK\fR, then records of a type byte and a
little\-endian u64 length: \fBD\fR the document, \fBB\fR a blob (its
sha256 first, 32 bytes), \fBU\fR chunks of the writable layer as a tar
(owners, modes and device nodes in the headers, xattrs as PAX records)
ended by an empty one, and \fBE\fR with the XXH3\-128 checksum of every
byte before it. Format and checks: lpmx_core::pack.
.SH EXIT STATUS
.TP
.B 0
success.
.TP
.B 1
a failure not listed below.
.TP
.B 2
wrong arguments, such as an invalid image reference.
.TP
.B 65
bad data: a blob that does not match its digest, a malformed manifest or
document.
.TP
.B 66
not found: an unknown image or tag, or no image for the platform asked for.
.TP
.B 69
a registry unreachable, or failing after every retry.
.TP
.B 73
cannot create: a container name already taken.
.TP
.B 74
reading or writing the store failed.
.TP
.B 77
credentials missing or refused.
.PP
A closed standard output (a pipe whose reader went away) is not an error.
.SH ENVIRONMENT
.TP
.B LPMX_HOME
the store.
.TP
.B LPMX_STORE_PATH
read\-only stores searched after it, ':'\-separated (see THE STORE).
.TP
.B REGISTRY_AUTH_FILE, DOCKER_CONFIG
where registry credentials are read (see lpmx\-pull(1)).
.TP
.B LPMX_LIBUNION
libunion.so for lpmx\-exec, when it is not next to it or in ../lib/lpmx/.
.TP
.B LPMX_UPPER, LPMX_INDEX, LPMX_BINDS, LPMX_LIBDIRS, LPMX_LIBS, LPMX_LIB, LPMX_ENV_FILE, LPMX_ENV_KEYS
set by lpmx\-exec for libunion in the container's processes: the writable
layer, the layers' index, the binds (HOST=CONTAINER pairs joined by ':'),
the image's library directories, its library directory in the store,
libunion's own path, the container's environment file and the variables
it set at the last exec.
.SH SEE ALSO
lpmx\-pull(1), lpmx\-unpack(1), lpmx\-mkroot(1), lpmx\-exec(1), lpmx\-env(1)
"#,
        version = env!("CARGO_PKG_VERSION"),
        example = roff_literal(&example_image_document()),
        layers_example = roff_literal(&example_layers_document()),
        meta_example = roff_literal(&example_layer_meta()),
    )
}
