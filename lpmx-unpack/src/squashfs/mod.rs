//! Singularity images and plain squashfs images into the store.
//!
//! The squashfs tree (read with the `backhand` crate; the files' data by
//! `data`, no external tool, no mount) becomes one uncompressed tar layer,
//! in one pass over the image:
//!
//! - worker threads decompress the files ahead, in order (`data`);
//! - this thread writes the tar stream from them, in chunks shared with
//!   the two threads below (file data travels as its own chunk, uncopied);
//! - one thread hashes the stream (the blob digest and the diff_id are the
//!   same) and writes it into `tmp/` as the blob;
//! - one extracts it into a layer directory in `tmp/` with the ordinary
//!   extractor.
//!
//! The blob and the layer are put in place only when both are complete;
//! then an image config (Env from `/.singularity.d/env/*.sh`, Cmd the
//! runscript) and an OCI manifest are stored as blobs, as a docker-archive
//! import does. The image then unpacks like any other (its layer is
//! already there).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

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

mod data;
mod environment;
use data::{Cursor, DataReader, Inflater};
use environment::environment;

/// The squashfs signature (little-endian version 4, as mksquashfs writes).
pub const SQUASHFS_MAGIC: &[u8] = b"hsqs";
const SUPERBLOCK_LEN: usize = 96;
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the converting thread and each of the
/// extracting and the storing thread.
const DEPTH: usize = 32;
/// Environment scripts larger than this are not read for variables.
const ENV_SCRIPT_LIMIT: u64 = 1 << 20;
const ENV_DIR: &str = ".singularity.d/env";
const RUNSCRIPT: &str = ".singularity.d/runscript";
const LABELS: &str = ".singularity.d/labels.json";
/// Names of this import's files in `tmp/`, all starting with TEMP_PREFIX.
const TEMP_PREFIX: &str = "squashfs-";
const BLOB_TEMP: &str = "squashfs-blob";
const LAYER_TEMP: &str = "squashfs-layer";

/// Where a squashfs image came from, for the image's reference and config.
pub struct Origin<'a> {
    /// `sif` or `squashfs`: the reference is `KIND:/absolute/path`.
    pub kind: &'static str,
    pub path: &'a Path,
    /// The architecture the image says it is for (SIF), else the host's.
    pub architecture: Option<String>,
    /// The JSON of the SIF's labels object.
    pub labels: Option<Vec<u8>>,
}

/// A byte range of a file, read as a file of its own: the squashfs of a
/// SIF image never reads outside its partition.
pub struct Window {
    inner: BufReader<File>,
    start: u64,
    len: u64,
    pos: u64,
}

impl Window {
    pub fn new(mut file: File, start: u64, len: u64) -> io::Result<Window> {
        file.seek(SeekFrom::Start(start))?;
        Ok(Window {
            inner: BufReader::with_capacity(1 << 17, file),
            start,
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
    // The files' data is read through a file descriptor of its own.
    let data_file = image
        .inner
        .get_ref()
        .try_clone()
        .map_err(UnpackError::io(origin.path))?;
    let (start, len) = (image.start, image.len);
    let filesystem = FilesystemReader::from_reader(image).map_err(reading_error)?;
    let data = DataReader::new(&filesystem, &data_file, start, len);
    remove_leftovers(store);
    let blob_temp = store.temp_path(BLOB_TEMP);
    let layer_temp = store.temp_path(LAYER_TEMP);
    let result = convert(store, &filesystem, &data, origin, &blob_temp, &layer_temp);
    if blob_temp.exists() {
        let _ = fs::remove_file(&blob_temp);
    }
    if layer_temp.exists() {
        let _ = fs::remove_dir_all(&layer_temp);
    }
    result
}

/// Removes what imports killed on the way left in `tmp/`.
fn remove_leftovers(store: &Store) {
    for path in store.abandoned_temps(TEMP_PREFIX) {
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
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
    /// `/.singularity.d/labels.json`.
    labels: Option<Vec<u8>>,
}

fn convert(
    store: &Store,
    filesystem: &FilesystemReader<'_>,
    data: &DataReader<'_>,
    origin: &Origin<'_>,
    blob_temp: &Path,
    layer_temp: &Path,
) -> Result<ImageDocument, UnpackError> {
    let root = layer_temp.join(ROOT_DIR);
    fs::create_dir_all(&root).map_err(UnpackError::io(&root))?;
    let blob_file = File::create(blob_temp).map_err(UnpackError::io(blob_temp))?;
    let name = origin.path.display().to_string();
    let (to_extractor, extractor_chunks) = sync_channel(DEPTH);
    let (to_storer, storer_chunks) = sync_channel(DEPTH);
    let workers = prefetch_workers();
    let pool = Pool::new(workers);
    let abandoned = Cell::new(false);
    let shared_bits = store.shared_bits();
    let (written, extracted, stored) = std::thread::scope(|scope| {
        let storer = std::thread::Builder::new()
            .name("store".to_owned())
            .spawn_scoped(scope, || store_blob(storer_chunks, &pool, blob_file))
            .map_err(UnpackError::io(blob_temp))?;
        let extractor = std::thread::Builder::new()
            .name("extract".to_owned())
            .spawn_scoped(scope, || {
                let mut stream = ChannelReader::new(extractor_chunks, &pool);
                let extracted = extract(&mut stream, &root, &name, shared_bits);
                if extracted.is_ok() {
                    // The archive's padding after its end: read, so the
                    // writer is not kept waiting.
                    let _ = io::copy(&mut stream, &mut io::sink());
                }
                extracted
            })
            .map_err(UnpackError::io(&root))?;
        let sinks = Sinks {
            extractor: to_extractor,
            storer: to_storer,
        };
        let written = write_tar(filesystem, data, workers, sinks, &pool, &abandoned);
        // The tar writer and the channels' senders are gone: both threads
        // see the end of the stream and finish.
        let extracted = extractor
            .join()
            .unwrap_or_else(|_| Err(UnpackError::Squashfs("the extractor panicked".to_owned())));
        let stored = storer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the blob writer panicked")));
        Ok::<_, UnpackError>((written, extracted, stored))
    })?;
    let stored = stored.map_err(UnpackError::io(blob_temp))?;
    let (found, digest, size) = match (written, extracted) {
        (Ok(found), Ok(meta)) => {
            let (digest, size) = stored;
            if !store.has_blob(&digest) {
                store
                    .commit_blob(&digest, blob_temp)
                    .map_err(UnpackError::io(store.own_blob_path(&digest)))?;
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
    // Singularity's labels, the SIF object's over the tree's.
    let mut labels = serde_json::Map::new();
    for json in [found.labels.as_deref(), origin.labels.as_deref()]
        .into_iter()
        .flatten()
    {
        labels.extend(labels_of(json));
    }
    let mut run_config = serde_json::json!({ "Env": env, "Cmd": [cmd] });
    if !labels.is_empty() {
        run_config["Labels"] = serde_json::Value::Object(labels);
    }
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": run_config,
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

/// Writes the tree as a tar to the extracting and the storing thread;
/// returns what it found.
fn write_tar(
    filesystem: &FilesystemReader<'_>,
    data: &DataReader<'_>,
    workers: usize,
    sinks: Sinks,
    pool: &Pool,
    abandoned: &Cell<bool>,
) -> Result<Found, UnpackError> {
    let tee = Tee {
        sinks: Some(sinks),
        pool,
        chunk: pool.take(CHUNK),
        abandoned,
    };
    let mut builder = tar::Builder::new(tee);
    // Files are decompressed ahead, in order, by worker threads; a hard
    // link's second name needs no data.
    let mut first_names = HashMap::new();
    let files: Vec<(&SquashfsFileReader, bool)> = filesystem
        .files()
        .filter_map(|node| match &node.inner {
            InnerNode::File(file) => {
                let again = link_key(file, &node.header)
                    .is_some_and(|key| first_names.insert(key, ()).is_some());
                Some((file, !again))
            }
            _ => None,
        })
        .collect();
    let found = std::thread::scope(|scope| {
        let mut prefetch = Prefetch {
            workers: Vec::new(),
            next: 0,
        };
        let mut handles = Vec::new();
        for worker in 0..workers {
            let (sender, receiver) = sync_channel(PREFETCH_BATCHES);
            let files = &files;
            let handle = std::thread::Builder::new()
                .name("decompress".to_owned())
                .spawn_scoped(scope, move || {
                    decompress_ahead(data, files, (worker, workers), pool, sender);
                })
                .map_err(stream_error)?;
            handles.push(handle);
            prefetch.workers.push((receiver, VecDeque::new()));
        }
        let written = write_entries(filesystem, &mut builder, &mut prefetch);
        // The receivers go, so workers still sending stop.
        drop(prefetch);
        let panicked = handles.into_iter().any(|handle| handle.join().is_err());
        if panicked && written.is_err() {
            return Err(UnpackError::Squashfs(
                "a decompression thread panicked".to_owned(),
            ));
        }
        written
    })?;
    let tee = builder.into_inner().map_err(stream_error)?;
    tee.finish().map_err(stream_error)?;
    Ok(found)
}

/// Threads decompressing files ahead of the tar writer: one a core, at
/// least two (they wait for the writer in turn), at most eight.
fn prefetch_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}
/// Files go to the writer in batches of about this many bytes or files:
/// a message per small file would cost a wake-up each.
const BATCH_BYTES: usize = 256 << 10;
const BATCH_FILES: usize = 8;
/// Batches each worker may hold, waiting for the writer.
const PREFETCH_BATCHES: usize = 4;
/// Larger files go to the writer in parts of about this size.
const PART_BYTES: usize = 1 << 20;

/// A file's data, decompressed ahead: a large file comes in parts.
enum Prefetched {
    /// The data, or its last part.
    Data(Vec<u8>),
    /// A part of the data; more follows.
    Part(Vec<u8>),
    Failed(io::Error),
}

/// The decompressed files, in the order of the tree's file nodes: worker
/// `i % workers` has file `i`.
struct Prefetch {
    /// Each worker's batches, and what is left of the one being taken.
    workers: Vec<(Receiver<Vec<Prefetched>>, VecDeque<Prefetched>)>,
    /// The next file's number.
    next: usize,
}

impl Prefetch {
    /// The next file's data, or its first part.
    fn next(&mut self) -> io::Result<Prefetched> {
        self.next += 1;
        self.take((self.next - 1) % self.workers.len())
    }

    /// The next part of the file `next` gave the first part of.
    fn more(&mut self) -> io::Result<Prefetched> {
        self.take((self.next - 1) % self.workers.len())
    }

    /// Reads past the rest of a file whose data is not needed.
    fn skip_rest(&mut self, first: Prefetched) -> io::Result<()> {
        let mut item = first;
        while let Prefetched::Part(_) = item {
            item = self.more()?;
        }
        Ok(())
    }

    fn take(&mut self, worker: usize) -> io::Result<Prefetched> {
        let (batches, batch) = &mut self.workers[worker];
        if batch.is_empty() {
            let received = batches
                .recv()
                .map_err(|_| io::Error::other("a decompression thread stopped"))?;
            batch.extend(received);
        }
        batch
            .pop_front()
            .ok_or_else(|| io::Error::other("a decompression thread sent nothing"))
    }
}

/// Decompresses worker `worker`'s share of `files`, in order, until done
/// or the writer stops listening.
fn decompress_ahead(
    data: &DataReader<'_>,
    files: &[(&SquashfsFileReader, bool)],
    (worker, workers): (usize, usize),
    pool: &Pool,
    sender: SyncSender<Vec<Prefetched>>,
) {
    let mut inflater = Inflater::default();
    let mut batch = Batch {
        items: Vec::with_capacity(BATCH_FILES),
        bytes: 0,
        sender,
    };
    for &(file, wanted) in files.iter().skip(worker).step_by(workers) {
        let len = file.file_len();
        if !wanted {
            if batch.push(Prefetched::Data(Vec::new())).is_err() {
                return;
            }
            continue;
        }
        if len <= PART_BYTES {
            let mut bytes = pool.take(len);
            let item = match data.read_file(file, &mut inflater, &mut bytes) {
                Ok(()) => Prefetched::Data(bytes),
                Err(e) => Prefetched::Failed(e),
            };
            if batch.push(item).is_err() {
                return;
            }
            continue;
        }
        // A large file, in parts of about PART_BYTES.
        let mut cursor = Cursor::new(file);
        let mut part = pool.take(PART_BYTES + data.block_size());
        loop {
            let item = match data.read_next(&mut cursor, &mut inflater, &mut part) {
                Ok(true) if part.len() < PART_BYTES => continue,
                Ok(true) => {
                    let next = pool.take(PART_BYTES + data.block_size());
                    Prefetched::Part(std::mem::replace(&mut part, next))
                }
                Ok(false) => Prefetched::Data(std::mem::take(&mut part)),
                Err(e) => Prefetched::Failed(e),
            };
            let last = !matches!(item, Prefetched::Part(_));
            if batch.push(item).is_err() {
                return;
            }
            if last {
                break;
            }
        }
    }
    let _ = batch.flush();
}

/// A worker's files on their way to the writer.
struct Batch {
    items: Vec<Prefetched>,
    bytes: usize,
    sender: SyncSender<Vec<Prefetched>>,
}

impl Batch {
    /// Adds `item`, sending the batch once it is full; an error when the
    /// writer stopped listening.
    fn push(&mut self, item: Prefetched) -> Result<(), ()> {
        match &item {
            Prefetched::Data(bytes) | Prefetched::Part(bytes) => self.bytes += bytes.len(),
            // The writer stops at a failure: send it at once.
            Prefetched::Failed(_) => self.bytes = BATCH_BYTES,
        }
        self.items.push(item);
        if self.items.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        self.bytes = 0;
        if self.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::replace(&mut self.items, Vec::with_capacity(BATCH_FILES));
        self.sender.send(items).map_err(|_| ())
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
    // Hard links: the first name of each inode written so far.
    let mut links: HashMap<LinkKey, PathBuf> = HashMap::new();
    for node in filesystem.files() {
        let path = node.fullpath.as_path();
        if path == Path::new("/") {
            // The root: its attributes are the container's root's, which
            // lpmx does not keep per layer (as for a tar's `./`). backhand
            // refuses names given twice (DuplicatedFileName).
            continue;
        }
        let shown = path.display().to_string();
        let refuse = |why: &str| UnpackError::SquashfsUnsafe {
            entry: shown.clone(),
            why: why.to_owned(),
        };
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
                let first = prefetch.next().map_err(failed)?;
                if let Some(key) = link_key(file, &node.header) {
                    if let Some(target) = links.get(&key) {
                        prefetch.skip_rest(first).map_err(failed)?;
                        let mut header = header_of(tar::EntryType::Link, 0);
                        builder
                            .append_link(&mut header, &rel, target)
                            .map_err(failed)?;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                let len = file.file_len() as u64;
                if let Prefetched::Data(bytes) = &first
                    && len <= ENV_SCRIPT_LIMIT
                {
                    if is_env_script(&rel) {
                        found.env_scripts.push((rel.clone(), bytes.clone()));
                    } else if rel == Path::new(LABELS) {
                        found.labels = Some(bytes.clone());
                    }
                }
                let mut header = header_of(tar::EntryType::Regular, len);
                append_file(builder, &mut header, &rel, first, prefetch).map_err(failed)?;
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

/// A regular file's entry: tar writes the header (and a long name's extra
/// entry), then the file's data, from `first` on, joins the stream as the
/// workers decompressed it (`Tee::append`), without a copy through tar's
/// small buffer.
fn append_file(
    builder: &mut tar::Builder<Tee>,
    header: &mut tar::Header,
    path: &Path,
    first: Prefetched,
    prefetch: &mut Prefetch,
) -> io::Result<()> {
    builder.append_data(header, path, io::empty())?;
    let out = builder.get_mut();
    let mut item = first;
    let mut len = 0;
    loop {
        match item {
            Prefetched::Part(bytes) => {
                len += bytes.len();
                out.append(bytes)?;
            }
            Prefetched::Data(bytes) => {
                len += bytes.len();
                out.append(bytes)?;
                break;
            }
            Prefetched::Failed(e) => return Err(e),
        }
        item = prefetch.more()?;
    }
    // The tar's entries line up only if the data is as long as its header.
    if len as u64 != header.size()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "its data is {len} bytes long, its length {}",
                header.size()?
            ),
        ));
    }
    let padding = (512 - len % 512) % 512;
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

/// The labels of a Singularity labels JSON object, as the strings an
/// image config's `Labels` holds: numbers and booleans in their JSON form
/// (`1.50` becomes `1.5`); nested values are left out, and anything that
/// is not an object gives nothing.
fn labels_of(json: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(json) else {
        return serde_json::Map::new();
    };
    object
        .into_iter()
        .filter_map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => value.to_string(),
                _ => return None,
            };
            Some((key, serde_json::Value::String(text)))
        })
        .collect()
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

/// A piece of the tar stream, shared by the extracting and the storing
/// thread.
type Chunk = Arc<Vec<u8>>;

/// Where the tar stream goes.
struct Sinks {
    extractor: SyncSender<Chunk>,
    storer: SyncSender<Chunk>,
}

/// Buffers for file data and stream chunks, given back by the threads
/// done with them: reused, they are not mapped and faulted in again for
/// every file.
struct Pool {
    buffers: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most: about as many as are in flight.
    limit: usize,
}

impl Pool {
    fn new(workers: usize) -> Pool {
        Pool {
            buffers: Mutex::new(Vec::new()),
            limit: workers * (PREFETCH_BATCHES + 2) * BATCH_FILES + 2 * DEPTH,
        }
    }

    /// An empty buffer for at least `capacity` bytes: the smallest kept
    /// one that fits (growing one would mean fresh memory anyway).
    fn take(&self, capacity: usize) -> Vec<u8> {
        let pool = &mut *self.buffers.lock().expect("buffer pool");
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= capacity)
            .min_by_key(|&i| pool[i].capacity());
        match best {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(capacity),
        }
    }

    fn put(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let pool = &mut *self.buffers.lock().expect("buffer pool");
        if pool.len() < self.limit {
            pool.push(buffer);
        } else if let Some(smallest) = (0..pool.len()).min_by_key(|&i| pool[i].capacity())
            && pool[smallest].capacity() < buffer.capacity()
        {
            pool[smallest] = buffer;
        }
    }
}

/// Data at least this long joins the stream as its own chunk rather than
/// being copied into one.
const OWN_CHUNK: usize = 64 << 10;

/// The tar stream, sent to the extracting and the storing thread in chunks.
struct Tee<'p> {
    sinks: Option<Sinks>,
    pool: &'p Pool,
    chunk: Vec<u8>,
    /// Set when the extractor stopped reading (it refused an entry).
    abandoned: &'p Cell<bool>,
}

impl Tee<'_> {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = self.pool.take(CHUNK);
        let full = std::mem::replace(&mut self.chunk, next);
        self.send(full)
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let chunk = Arc::new(chunk);
        let Some(sinks) = &self.sinks else {
            return Err(io::Error::other("the stream has ended"));
        };
        if sinks.storer.send(Arc::clone(&chunk)).is_err() {
            // Its error is the one reported.
            return Err(io::Error::other("the blob writer stopped"));
        }
        if sinks.extractor.send(chunk).is_err() {
            self.abandoned.set(true);
            return Err(io::Error::other("the extractor stopped"));
        }
        Ok(())
    }

    /// Adds `data` to the stream without copying it, unless it is short.
    fn append(&mut self, data: Vec<u8>) -> io::Result<()> {
        if data.len() < OWN_CHUNK {
            self.write_all(&data)?;
            self.pool.put(data);
            return Ok(());
        }
        self.send_chunk()?;
        self.send(data)
    }

    /// Sends what is left and ends the stream.
    fn finish(mut self) -> io::Result<()> {
        self.send_chunk()?;
        self.sinks = None;
        Ok(())
    }
}

impl Write for Tee<'_> {
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

/// Gives a chunk back to be filled again, by whichever of the two threads
/// is done with it last.
fn give_back(chunk: Chunk, pool: &Pool) {
    if let Some(chunk) = Arc::into_inner(chunk) {
        pool.put(chunk);
    }
}

/// The storing thread: writes the stream into `blob` and hashes it;
/// returns its digest and size.
fn store_blob(chunks: Receiver<Chunk>, pool: &Pool, mut blob: File) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::default();
    let mut size = 0u64;
    for chunk in chunks {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        blob.write_all(&chunk)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the layer blob: {e}")))?;
        give_back(chunk, pool);
    }
    Ok((hasher.finish(), size))
}

/// The extractor's side of its channel, as a reader.
struct ChannelReader<'p> {
    chunks: Receiver<Chunk>,
    /// Where read chunks go back, to be filled again.
    pool: &'p Pool,
    current: Chunk,
    offset: usize,
}

impl ChannelReader<'_> {
    fn new(chunks: Receiver<Chunk>, pool: &Pool) -> ChannelReader<'_> {
        ChannelReader {
            chunks,
            pool,
            current: Arc::default(),
            offset: 0,
        }
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    let done = std::mem::replace(&mut self.current, chunk);
                    give_back(done, self.pool);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        assert_eq!(relative(Path::new("/a/b")).unwrap(), Path::new("a/b"));
        assert!(relative(Path::new("/a/../b")).is_err());
        assert!(relative(Path::new("/")).is_err());
        assert!(relative(Path::new("a")).is_err());
        assert_eq!(split_device(0x0103), (1, 3));
    }
}
