//! Singularity images and plain squashfs images into the store.
//!
//! The squashfs tree (read with the `backhand` crate, no external tool,
//! no mount) becomes one uncompressed tar layer: one pass over the image
//! (files decompressed ahead by worker threads) writes the tar stream; a
//! thread beside it hashes the stream (the blob digest and the diff_id are
//! the same), writes it into `tmp/` as the blob and extracts it into a
//! layer directory in `tmp/` with the ordinary extractor. The
//! blob and the layer are put in place only when both are complete; then an
//! image config (Env from `/.singularity.d/env/*.sh`, Cmd the runscript)
//! and an OCI manifest are stored as blobs, as a docker-archive import does.
//! The image then unpacks like any other (its layer is already there).

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use backhand::{BackhandError, FilesystemReader, InnerNode, NodeHeader, SquashfsFileReader};
use lpmx_core::digest::{Digest, Hasher};
use lpmx_core::document::ImageDocument;
use lpmx_core::layer::ROOT_DIR;
use lpmx_core::oci::{Descriptor, Platform, media};
use lpmx_core::store::Store;

use crate::error::UnpackError;
use crate::extract::extract;
use crate::layer::install_layer;
use crate::source::image_as_pulled;

/// The squashfs signature (little-endian version 4, as mksquashfs writes).
pub const SQUASHFS_MAGIC: &[u8] = b"hsqs";
const SUPERBLOCK_LEN: usize = 96;
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the converting and the extracting thread.
const DEPTH: usize = 8;
/// Environment scripts larger than this are not read for variables.
const ENV_SCRIPT_LIMIT: u64 = 1 << 20;
const ENV_DIR: &str = ".singularity.d/env";
const RUNSCRIPT: &str = ".singularity.d/runscript";
/// Names of this import's files in `tmp/`.
const BLOB_TEMP: &str = "squashfs-blob";
const LAYER_TEMP: &str = "squashfs-layer";

/// Where a squashfs image came from, for the image's reference and config.
pub struct Origin<'a> {
    /// `sif` or `squashfs`: the reference is `KIND:/absolute/path`.
    pub kind: &'static str,
    pub path: &'a Path,
    /// The architecture the image says it is for (SIF), else the host's.
    pub architecture: Option<String>,
}

/// A byte range of a file, read as a file of its own: the squashfs of a
/// SIF image never reads outside its partition.
pub struct Window {
    inner: BufReader<File>,
    len: u64,
    pos: u64,
}

impl Window {
    pub fn new(mut file: File, start: u64, len: u64) -> io::Result<Window> {
        file.seek(SeekFrom::Start(start))?;
        Ok(Window {
            inner: BufReader::with_capacity(1 << 17, file),
            len,
            pos: 0,
        })
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = (buf.len() as u64).min(self.remaining()) as usize;
        let n = self.inner.read(&mut buf[..max])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl BufRead for Window {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let remaining = self.remaining();
        let buf = self.inner.fill_buf()?;
        let n = (buf.len() as u64).min(remaining) as usize;
        Ok(&buf[..n])
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.pos += amount as u64;
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        let delta = i64::try_from(i128::from(target) - i128::from(self.pos))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        self.inner.seek_relative(delta)?;
        self.pos = target;
        Ok(target)
    }
}

/// Imports the squashfs image `image` (a whole file, or a SIF partition).
pub fn import_squashfs(
    store: &Store,
    mut image: Window,
    origin: &Origin<'_>,
) -> Result<ImageDocument, UnpackError> {
    check_superblock(&mut image)?;
    let filesystem = FilesystemReader::from_reader(image).map_err(reading_error)?;
    remove_leftovers(store);
    let blob_temp = store.temp_path(BLOB_TEMP);
    let layer_temp = store.temp_path(LAYER_TEMP);
    let result = convert(store, &filesystem, origin, &blob_temp, &layer_temp);
    if blob_temp.exists() {
        let _ = fs::remove_file(&blob_temp);
    }
    if layer_temp.exists() {
        let _ = fs::remove_dir_all(&layer_temp);
    }
    result
}

/// Removes what imports killed on the way left in `tmp/`: entries named
/// by a process that is gone (`HINT.PID.N.tmp`, see `Store::temp_path`).
fn remove_leftovers(store: &Store) {
    let Ok(entries) = fs::read_dir(store.tmp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let mut parts = name.split('.');
        let (Some(hint), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if (hint == BLOB_TEMP || hint == LAYER_TEMP)
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(pid).exists()
        {
            let path = entry.path();
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
        }
    }
}

/// Refuses what is not a squashfs 4 image, or is shorter than it says.
fn check_superblock(image: &mut Window) -> Result<(), UnpackError> {
    let mut superblock = [0u8; SUPERBLOCK_LEN];
    let available = image.remaining();
    image
        .read_exact(&mut superblock)
        .map_err(|_| UnpackError::Squashfs(format!("it is truncated: {available} bytes")))?;
    image
        .seek(SeekFrom::Start(0))
        .map_err(|e| UnpackError::Squashfs(e.to_string()))?;
    if !superblock.starts_with(SQUASHFS_MAGIC) {
        return Err(UnpackError::Squashfs(
            "it does not start with the squashfs signature \"hsqs\"".to_owned(),
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([superblock[at], superblock[at + 1]]);
    let (major, minor) = (u16_at(28), u16_at(30));
    if major != 4 {
        return Err(UnpackError::Squashfs(format!(
            "it is squashfs version {major}.{minor}; lpmx reads version 4 (mksquashfs 4.x)"
        )));
    }
    let mut used = [0u8; 8];
    used.copy_from_slice(&superblock[40..48]);
    let used = u64::from_le_bytes(used);
    if used > image.len {
        return Err(UnpackError::Squashfs(format!(
            "it is truncated: it says it holds {used} bytes, but only {} are there",
            image.len
        )));
    }
    Ok(())
}

fn reading_error(error: BackhandError) -> UnpackError {
    UnpackError::Squashfs(match error {
        BackhandError::InvalidFilePath | BackhandError::UndefineFileName => {
            "it has an entry whose name is not a plain file name (empty, `.`, `..` or holding \
             a `/`), which would leave the image's root; nothing was imported"
                .to_owned()
        }
        BackhandError::DuplicatedFileName => {
            "a directory in it names one entry twice; nothing was imported".to_owned()
        }
        BackhandError::UnsupportedCompression(name) => {
            format!("it is compressed with {name}, which lpmx cannot decompress")
        }
        other => other.to_string(),
    })
}

/// What the conversion saw of the image's Singularity metadata.
#[derive(Default)]
struct Found {
    /// `/.singularity.d/env/*.sh`, by name.
    env_scripts: Vec<(PathBuf, Vec<u8>)>,
    runscript: bool,
}

fn convert(
    store: &Store,
    filesystem: &FilesystemReader<'_>,
    origin: &Origin<'_>,
    blob_temp: &Path,
    layer_temp: &Path,
) -> Result<ImageDocument, UnpackError> {
    let root = layer_temp.join(ROOT_DIR);
    fs::create_dir_all(&root).map_err(UnpackError::io(&root))?;
    let blob_file = File::create(blob_temp).map_err(UnpackError::io(blob_temp))?;
    let name = origin.path.display().to_string();
    let (sender, receiver) = sync_channel(DEPTH);
    // Chunks the extractor is done with come back to be filled again.
    let (recycle, recycled) = sync_channel(DEPTH + 2);
    let abandoned = Rc::new(Cell::new(false));
    let (written, (extracted, stored)) = std::thread::scope(|scope| {
        // The extractor's thread also hashes the stream and writes the blob.
        let extractor = std::thread::Builder::new()
            .name("extract".to_owned())
            .spawn_scoped(scope, || {
                let mut stream = ChannelReader::new(receiver, recycle, blob_file);
                let extracted = extract(&mut stream, &root, &name);
                if extracted.is_ok() {
                    // What follows the archive's end (its padding) belongs
                    // to the blob too.
                    let _ = io::copy(&mut stream, &mut io::sink());
                }
                (extracted, stream.finish())
            })
            .map_err(UnpackError::io(&root))?;
        let written = write_tar(filesystem, sender, recycled, &abandoned);
        // The tar writer and the channel's sender are gone: the extractor
        // sees the end of the stream and finishes.
        let extracted = extractor.join().unwrap_or_else(|_| {
            (
                Err(UnpackError::Squashfs("the extractor panicked".to_owned())),
                Err(io::Error::other("the extractor panicked")),
            )
        });
        Ok::<_, UnpackError>((written, extracted))
    })?;
    let stored = stored.map_err(UnpackError::io(blob_temp))?;
    let (found, digest, size) = match (written, extracted) {
        (Ok(found), Ok(meta)) => {
            let (digest, size) = stored;
            if !store.has_blob(&digest) {
                store
                    .commit_blob(&digest, blob_temp)
                    .map_err(UnpackError::io(store.blob_path(&digest)))?;
            }
            install_layer(store, layer_temp, &digest, meta)?;
            (found, digest, size)
        }
        // The extractor refused the stream and stopped reading it.
        (_, Err(e)) if abandoned.get() => return Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
    };
    let env = environment(&found.env_scripts);
    let cmd = if found.runscript {
        format!("/{RUNSCRIPT}")
    } else {
        "/bin/sh".to_owned()
    };
    let architecture = origin
        .architecture
        .clone()
        .unwrap_or_else(|| Platform::host().architecture);
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": { "Env": env, "Cmd": [cmd] },
        "rootfs": { "type": "layers", "diff_ids": [digest] },
        "history": [{ "created_by": format!("lpmx-unpack: the root filesystem of a {} image", origin.kind) }],
    });
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let layer = Descriptor {
        media_type: media::OCI_LAYER.to_owned(),
        digest,
        size,
        platform: None,
        annotations: Default::default(),
    };
    let absolute = fs::canonicalize(origin.path).unwrap_or_else(|_| origin.path.to_owned());
    image_as_pulled(
        store,
        format!("{}:{}", origin.kind, absolute.display()),
        &config_bytes,
        vec![layer],
    )
}

/// Writes the tree as a tar into `blob` and the extractor's channel;
/// returns what it found, the tar's digest and its size.
fn write_tar(
    filesystem: &FilesystemReader<'_>,
    sender: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
    abandoned: &Rc<Cell<bool>>,
) -> Result<Found, UnpackError> {
    let tee = Tee {
        sender: Some(sender),
        recycled,
        chunk: Vec::with_capacity(CHUNK),
        abandoned: Rc::clone(abandoned),
    };
    let mut builder = tar::Builder::new(tee);
    builder.mode(tar::HeaderMode::Complete);
    // Files are decompressed ahead, in order, by worker threads.
    let files: Vec<&SquashfsFileReader> = filesystem
        .files()
        .filter_map(|node| match &node.inner {
            InnerNode::File(file) => Some(file),
            _ => None,
        })
        .collect();
    let found = std::thread::scope(|scope| {
        let mut prefetch = Prefetch {
            workers: Vec::new(),
            next: 0,
        };
        for worker in 0..PREFETCH_WORKERS {
            let (sender, receiver) = sync_channel(PREFETCH_DEPTH);
            let files = &files;
            std::thread::Builder::new()
                .name("decompress".to_owned())
                .spawn_scoped(scope, move || {
                    decompress_ahead(filesystem, files, worker, sender);
                })
                .map_err(stream_error)?;
            prefetch.workers.push(receiver);
        }
        // On return the receivers go, so workers still sending stop.
        write_entries(filesystem, &mut builder, &mut prefetch)
    })?;
    let tee = builder.into_inner().map_err(stream_error)?;
    tee.finish().map_err(stream_error)?;
    Ok(found)
}

/// Threads decompressing files ahead of the tar writer.
const PREFETCH_WORKERS: usize = 2;
/// Files each worker may hold decompressed, waiting for the writer.
const PREFETCH_DEPTH: usize = 16;
/// Larger files are streamed by the writer itself.
const PREFETCH_LIMIT: u64 = 4 << 20;

/// A file's data, decompressed ahead or not.
enum Prefetched {
    Data(Vec<u8>),
    /// Too large to hold: read it as it is written.
    Stream,
    Failed(io::Error),
}

/// The decompressed files, in the order of the tree's file nodes: worker
/// `i % PREFETCH_WORKERS` has file `i`.
struct Prefetch {
    workers: Vec<Receiver<Prefetched>>,
    next: usize,
}

impl Prefetch {
    fn next(&mut self) -> io::Result<Prefetched> {
        let worker = &self.workers[self.next % self.workers.len()];
        self.next += 1;
        worker
            .recv()
            .map_err(|_| io::Error::other("a decompression thread stopped"))
    }
}

/// Decompresses worker `worker`'s share of `files`, in order, until done
/// or the writer stops listening.
fn decompress_ahead(
    filesystem: &FilesystemReader<'_>,
    files: &[&SquashfsFileReader],
    worker: usize,
    sender: SyncSender<Prefetched>,
) {
    for file in files.iter().skip(worker).step_by(PREFETCH_WORKERS) {
        let len = file.file_len() as u64;
        let item = if len > PREFETCH_LIMIT {
            Prefetched::Stream
        } else {
            let mut data = Vec::with_capacity(len as usize);
            let mut exact = Exact {
                inner: filesystem.file(file).reader(),
                left: len,
            };
            match exact.read_to_end(&mut data) {
                Ok(_) => Prefetched::Data(data),
                Err(e) => Prefetched::Failed(e),
            }
        };
        if sender.send(item).is_err() {
            return;
        }
    }
}

fn stream_error(source: io::Error) -> UnpackError {
    UnpackError::Squashfs(format!("cannot convert it: {source}"))
}

fn write_entries(
    filesystem: &FilesystemReader<'_>,
    builder: &mut tar::Builder<Tee>,
    prefetch: &mut Prefetch,
) -> Result<Found, UnpackError> {
    let mut found = Found::default();
    let mut previous: Option<&Path> = None;
    // Hard links: the first name of each inode written so far.
    let mut links: HashMap<LinkKey, PathBuf> = HashMap::new();
    for node in filesystem.files() {
        let path = node.fullpath.as_path();
        if path == Path::new("/") && previous.is_none() {
            // The root: its attributes are the container's root's, which
            // lpmx does not keep per layer (as for a tar's `./`).
            previous = Some(path);
            continue;
        }
        let shown = path.display().to_string();
        let refuse = |why: &str| UnpackError::SquashfsUnsafe {
            entry: shown.clone(),
            why: why.to_owned(),
        };
        if previous == Some(path) {
            return Err(refuse("appears twice"));
        }
        previous = Some(path);
        let rel = relative(path).map_err(refuse)?;
        let header_of = |kind: tar::EntryType, size: u64| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(u32::from(node.header.permissions) & 0o7777);
            header.set_uid(node.header.uid.into());
            header.set_gid(node.header.gid.into());
            header.set_mtime(node.header.mtime.into());
            header.set_size(size);
            header
        };
        let failed = |source: io::Error| UnpackError::Squashfs(format!("{shown}: {source}"));
        if rel == Path::new(RUNSCRIPT) && !matches!(node.inner, InnerNode::Dir(_)) {
            found.runscript = true;
        }
        match &node.inner {
            InnerNode::Dir(_) => {
                let mut header = header_of(tar::EntryType::Directory, 0);
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(failed)?;
            }
            InnerNode::File(file) => {
                // Every file node takes its turn, also a second name.
                let prefetched = prefetch.next().map_err(failed)?;
                if let Some(key) = link_key(file, &node.header) {
                    if let Some(first) = links.get(&key) {
                        let mut header = header_of(tar::EntryType::Link, 0);
                        builder
                            .append_link(&mut header, &rel, first)
                            .map_err(failed)?;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                let len = file.file_len() as u64;
                let mut header = header_of(tar::EntryType::Regular, len);
                match prefetched {
                    Prefetched::Data(bytes) => {
                        append_bytes(builder, &mut header, &rel, &bytes).map_err(failed)?;
                        if is_env_script(&rel) && len <= ENV_SCRIPT_LIMIT {
                            found.env_scripts.push((rel, bytes));
                        }
                    }
                    Prefetched::Stream => {
                        let data = Exact {
                            inner: filesystem.file(file).reader(),
                            left: len,
                        };
                        builder
                            .append_data(&mut header, &rel, data)
                            .map_err(failed)?;
                    }
                    Prefetched::Failed(e) => return Err(failed(e)),
                }
            }
            InnerNode::Symlink(link) => {
                // Stored as it is: resolved inside the container at run time.
                let mut header = header_of(tar::EntryType::Symlink, 0);
                builder
                    .append_link(&mut header, &rel, &link.link)
                    .map_err(failed)?;
            }
            InnerNode::CharacterDevice(device) => {
                let mut header = header_of(tar::EntryType::Char, 0);
                set_device(&mut header, device.device_number).map_err(failed)?;
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(failed)?;
            }
            InnerNode::BlockDevice(device) => {
                let mut header = header_of(tar::EntryType::Block, 0);
                set_device(&mut header, device.device_number).map_err(failed)?;
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(failed)?;
            }
            InnerNode::NamedPipe => {
                let mut header = header_of(tar::EntryType::Fifo, 0);
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(failed)?;
            }
            // A socket is made by the program that listens on it: tar
            // archives have no way to say one, and nothing needs it.
            InnerNode::Socket => {}
        }
    }
    Ok(found)
}

/// A regular file's entry with `bytes` (its whole data, as the header's
/// size says). tar's own `append_data` would copy the data through a small
/// buffer, a second copy of every byte: here tar writes the header (and a
/// long name's extra entry), the data goes to the stream in one write.
fn append_bytes(
    builder: &mut tar::Builder<Tee>,
    header: &mut tar::Header,
    path: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    builder.append_data(header, path, io::empty())?;
    let out = builder.get_mut();
    out.write_all(bytes)?;
    let padding = (512 - bytes.len() % 512) % 512;
    out.write_all(&[0u8; 512][..padding])
}

/// What the names of one inode share: its data's place and size, link
/// count, attributes and time.
type LinkKey = (u64, u32, u32, u64, u32, u16, u32, u32, u32);

/// The key that finds a file's other names, for a file with several.
/// backhand does not give inode numbers, so names whose inodes agree on
/// everything (deduplicated data included) count as one inode.
fn link_key(file: &SquashfsFileReader, header: &NodeHeader) -> Option<LinkKey> {
    let SquashfsFileReader::Extended(extended) = file else {
        // Basic file inodes have a link count of one.
        return None;
    };
    (extended.link_count > 1).then_some((
        extended.blocks_start,
        extended.block_offset,
        extended.frag_index,
        extended.file_size,
        extended.link_count,
        header.permissions,
        header.uid,
        header.gid,
        header.mtime,
    ))
}

/// `/a/b` as `a/b`; refuses what could leave the root.
fn relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err("is not under the image's root");
    }
    let mut rel = PathBuf::new();
    for component in components {
        match component {
            Component::Normal(name) => rel.push(name),
            _ => return Err("leaves the image's root"),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err("is named `/`");
    }
    Ok(rel)
}

fn is_env_script(rel: &Path) -> bool {
    rel.parent() == Some(Path::new(ENV_DIR))
        && rel.extension().map(|e| e.as_bytes()) == Some(b"sh".as_slice())
}

fn set_device(header: &mut tar::Header, number: u32) -> io::Result<()> {
    let (major, minor) = split_device(number);
    header.set_device_major(major)?;
    header.set_device_minor(minor)
}

/// Linux's encoding of a device number, as squashfs stores it.
fn split_device(number: u32) -> (u32, u32) {
    let major = (number >> 8) & 0xfff;
    let minor = (number & 0xff) | ((number >> 12) & 0xfff00);
    (major, minor)
}

/// A file's data, exactly `left` bytes of it: a file that ends early is an
/// error rather than a tar whose entries run into one another.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("its data ends {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The tar stream, sent to the extractor in chunks.
struct Tee {
    sender: Option<SyncSender<Vec<u8>>>,
    /// Empty chunks to fill, back from the extractor.
    recycled: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    /// Set when the extractor stopped reading (it refused an entry).
    abandoned: Rc<Cell<bool>>,
}

impl Tee {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = match self.recycled.try_recv() {
            Ok(mut chunk) => {
                chunk.clear();
                chunk
            }
            Err(_) => Vec::with_capacity(CHUNK),
        };
        let chunk = std::mem::replace(&mut self.chunk, next);
        let sent = self.sender.as_ref().map(|s| s.send(chunk));
        if !matches!(sent, Some(Ok(()))) {
            self.abandoned.set(true);
            return Err(io::Error::other("the extractor stopped"));
        }
        Ok(())
    }

    /// Sends what is left and ends the stream.
    fn finish(mut self) -> io::Result<()> {
        self.send_chunk()?;
        self.sender = None;
        Ok(())
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.send_chunk()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The extractor's side of the channel, as a reader; every chunk is also
/// hashed and written to the blob as it arrives.
struct ChannelReader {
    chunks: Receiver<Vec<u8>>,
    /// Where read chunks go back, to be filled again.
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
    blob: File,
    hasher: Hasher,
    size: u64,
    /// Writing the blob failed: the stream stops with this error.
    failed: Option<io::Error>,
}

impl ChannelReader {
    fn new(chunks: Receiver<Vec<u8>>, recycle: SyncSender<Vec<u8>>, blob: File) -> ChannelReader {
        ChannelReader {
            chunks,
            recycle,
            current: Vec::new(),
            offset: 0,
            blob,
            hasher: Hasher::default(),
            size: 0,
            failed: None,
        }
    }

    /// The digest and size of what was read, or the blob's write error.
    fn finish(mut self) -> io::Result<(Digest, u64)> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok((std::mem::take(&mut self.hasher).finish(), self.size)),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.hasher.update(&chunk);
                    self.size += chunk.len() as u64;
                    if let Err(e) = self.blob.write_all(&chunk) {
                        let message = format!("cannot write the layer blob: {e}");
                        self.failed = Some(e);
                        return Err(io::Error::other(message));
                    }
                    let done = std::mem::replace(&mut self.current, chunk);
                    if done.capacity() > 0 {
                        let _ = self.recycle.try_send(done);
                    }
                    self.offset = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

/// The variables the image's environment scripts export, in the order
/// they first appear, later values replacing earlier ones. Scripts run in
/// name order, as Singularity sources them. Only simple lines count:
/// `export KEY=VALUE`, the value bare, 'single-quoted' or "double-quoted",
/// with `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME-word}` taken from
/// what the scripts set before; a line with command substitution or
/// anything else a shell would have to run is skipped.
pub fn environment(scripts: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    let mut sorted: Vec<&(PathBuf, Vec<u8>)> = scripts.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut vars: Vec<(String, String)> = Vec::new();
    for (_, script) in sorted {
        for line in String::from_utf8_lossy(script).lines() {
            let Some((key, value)) = export_line(line, &vars) else {
                continue;
            };
            match vars.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => vars.push((key, value)),
            }
        }
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn export_line(line: &str, vars: &[(String, String)]) -> Option<(String, String)> {
    let line = line.trim();
    let rest = line.strip_prefix("export")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (key, raw) = rest.trim_start().split_once('=')?;
    let mut chars = key.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let raw = raw.trim_end().strip_suffix(';').unwrap_or(raw.trim_end());
    let value = if let Some(inner) = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .filter(|inner| !inner.contains('\''))
    {
        inner.to_owned()
    } else if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        expand(inner, vars, true)?
    } else {
        expand(raw, vars, false)?
    };
    Some((key.to_owned(), value))
}

/// Expands the parameter forms a simple export uses; `None` for anything
/// else (command substitution, unquoted blanks, quotes inside).
fn expand(text: &str, vars: &[(String, String)], quoted: bool) -> Option<String> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '`' | '"' | '\'' => return None,
            c if c.is_whitespace() && !quoted => return None,
            '$' => {
                let rest = &text[at + 1..];
                if let Some(braced) = rest.strip_prefix('{') {
                    let end = braced.find('}')?;
                    let inner = &braced[..end];
                    let (name, default) = if let Some((name, word)) = inner.split_once(":-") {
                        (name, Some((word, true)))
                    } else if let Some((name, word)) = inner.split_once('-') {
                        (name, Some((word, false)))
                    } else {
                        (inner, None)
                    };
                    if name.is_empty() || !name.chars().all(is_name) {
                        return None;
                    }
                    let value = lookup(name);
                    match (value, default) {
                        (Some(""), Some((word, true))) => out.push_str(word),
                        (Some(v), _) => out.push_str(v),
                        (None, Some((word, _))) => out.push_str(word),
                        (None, None) => {}
                    }
                    // Skip `{inner}`.
                    for _ in 0..braced[..=end].chars().count() + 1 {
                        chars.next();
                    }
                } else {
                    let name: String = rest.chars().take_while(|&c| is_name(c)).collect();
                    if name.is_empty() {
                        return None;
                    }
                    out.push_str(lookup(&name).unwrap_or(""));
                    for _ in 0..name.chars().count() {
                        chars.next();
                    }
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(scripts: &[(&str, &str)]) -> Vec<String> {
        let scripts: Vec<(PathBuf, Vec<u8>)> = scripts
            .iter()
            .map(|(name, text)| (PathBuf::from(name), text.as_bytes().to_vec()))
            .collect();
        environment(&scripts)
    }

    #[test]
    fn simple_exports_become_the_environment() {
        let env = env_of(&[
            (
                "90-environment.sh",
                "#!/bin/sh\n# comment\nexport GREETING=\"hello world\"\nexport PATH=\"/opt/bin:$PATH\"\nexport RAW='a $b'\nexport X=1;\nFOO=bar\nexport BAD=$(id -u)\nexport DEF=${UNSET:-fallback}\n",
            ),
            (
                "10-docker2singularity.sh",
                "#!/bin/sh\nexport PATH=\"/usr/local/bin:/usr/bin:/bin\"\n",
            ),
        ]);
        assert_eq!(
            env,
            [
                "PATH=/opt/bin:/usr/local/bin:/usr/bin:/bin",
                "GREETING=hello world",
                "RAW=a $b",
                "X=1",
                "DEF=fallback",
            ]
        );
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        assert_eq!(relative(Path::new("/a/b")).unwrap(), Path::new("a/b"));
        assert!(relative(Path::new("/a/../b")).is_err());
        assert!(relative(Path::new("/")).is_err());
        assert!(relative(Path::new("a")).is_err());
        assert_eq!(split_device(0x0103), (1, 3));
    }
}
