//! A layer blob as a tar stream: read, hashed, decompressed and hashed again
//! on a thread of its own, so decompression and extraction run side by side.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use lpmx_core::digest::{Digest, Hasher};
use lpmx_core::oci::media;

const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type; `None` for one lpmx cannot unpack.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            media::DOCKER_LAYER_GZIP
            | media::DOCKER_LAYER_FOREIGN_GZIP
            | media::OCI_LAYER_GZIP
            | media::OCI_LAYER_NONDIST_GZIP => Some(Compression::Gzip),
            media::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            media::OCI_LAYER
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            _ => None,
        }
    }

    /// From a blob's first bytes, for archives that name no media type.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media::OCI_LAYER,
            Compression::Gzip => media::OCI_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        }
    }
}

/// Digests of a blob read to its end: as stored, and decompressed.
#[derive(Debug)]
pub struct Digests {
    pub compressed: Digest,
    pub uncompressed: Digest,
}

/// The decompressed bytes of a blob, read on a background thread.
pub struct LayerStream {
    chunks: Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
    worker: Option<JoinHandle<io::Result<Digests>>>,
    digests: Option<Digests>,
}

impl LayerStream {
    pub fn open(path: &Path, compression: Compression) -> io::Result<LayerStream> {
        let file = File::open(path)?;
        let (sender, chunks) = sync_channel(DEPTH);
        let worker = std::thread::Builder::new()
            .name("decompress".to_owned())
            .spawn(move || produce(file, compression, sender))?;
        Ok(LayerStream {
            chunks,
            current: Vec::new(),
            offset: 0,
            worker: Some(worker),
            digests: None,
        })
    }

    /// Reads what the consumer left (tar's trailing padding, say) so the
    /// digests cover the whole blob, then returns them.
    pub fn finish(mut self) -> io::Result<Digests> {
        let mut sink = vec![0u8; CHUNK];
        while self.read(&mut sink)? > 0 {}
        self.digests
            .take()
            .ok_or_else(|| io::Error::other("the layer stream failed"))
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            let Ok(chunk) = self.chunks.recv() else {
                // The producer is done; joining it tells whether it failed.
                if let Some(worker) = self.worker.take() {
                    match worker.join() {
                        Ok(Ok(digests)) => self.digests = Some(digests),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            return Err(io::Error::other("the decompression thread panicked"));
                        }
                    }
                }
                return Ok(0);
            };
            self.current = chunk;
            self.offset = 0;
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

/// Hashes what it reads, for the compressed digest.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn produce(
    file: File,
    compression: Compression,
    sender: SyncSender<Vec<u8>>,
) -> io::Result<Digests> {
    let mut raw = HashingReader {
        inner: file,
        hasher: Hasher::default(),
    };
    let mut uncompressed = Hasher::default();
    {
        let mut decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(CHUNK, &mut raw),
            )),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(
                BufReader::with_capacity(CHUNK, &mut raw),
            )?),
        };
        loop {
            let mut chunk = vec![0; CHUNK];
            let filled = lpmx_core::read::read_full(&mut decoder, &mut chunk).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("decompression failed: {e}"),
                )
            })?;
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            uncompressed.update(&chunk);
            if sender.send(chunk).is_err() {
                // The reader gave up (a refused entry): stop quietly.
                return Err(io::Error::other("layer stream abandoned"));
            }
        }
    }
    // Bytes after the compressed stream's end still belong to the blob.
    io::copy(&mut raw, &mut io::sink())?;
    Ok(Digests {
        compressed: raw.hasher.finish(),
        uncompressed: uncompressed.finish(),
    })
}
