//! The pack stream: one container and the layers it uses, as `lpmx-pack`
//! writes it and `lpmx-unpack` reads it (`lpmx-pack dev | ssh host
//! lpmx-unpack`).
//!
//! ```text
//! LPMX-PACK\n                      magic and format version 1
//! 'D' len  PackDocument (JSON)     what the container is
//! 'B' len  sha256 (32)  bytes      a blob: the manifest, the config, and
//!                                  with --layers=all each layer's blob
//! 'U' len  bytes   ...   'U' 0     the writable layer as a tar, in chunks
//! 'E' xxh3-128 (16)                the checksum of every byte before it
//! ```
//!
//! Lengths are u64, little-endian. Each blob is checked against its sha256
//! digest, as everything entering the store is, and the whole stream
//! against the last record, so a flipped byte or a transfer cut short is
//! caught before anything is committed. The stream's own check is XXH3-128,
//! not sha256: it guards against damage in transit (ssh already guards
//! against tampering, and whoever writes a stream chooses its content
//! anyway), and it costs next to nothing, where sha256 over a large
//! writable layer cost both ends more than the copy itself.
//! The writable layer's tar holds its files with their recorded owners,
//! modes and device nodes in the tar headers; its whiteouts travel in the
//! document, as `upper.whiteouts` has them.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use xxhash_rust::xxh3::Xxh3;

use crate::digest::Digest;
use crate::document::Document;
use crate::oci::{Platform, RunConfig};

pub const MAGIC: &[u8; 10] = b"LPMX-PACK\n";
pub const DOCUMENT: u8 = b'D';
pub const BLOB: u8 = b'B';
pub const UPPER: u8 = b'U';
pub const END: u8 = b'E';
/// Upper-layer chunks are at most this long. Writes to the pipe are no
/// longer either: a writer blocked on a full pipe reads no files, so pieces
/// well under the pipe's size ([`PIPE_SIZE`]) keep both ends busy.
pub const CHUNK: usize = 256 << 10;
/// What the pipe between lpmx-pack and lpmx-unpack is widened to, as far as
/// an unprivileged process may (`/proc/sys/fs/pipe-max-size`, 1 MiB by
/// default); the kernel's 64 KiB made the two ends take turns.
pub const PIPE_SIZE: i32 = 1 << 20;

/// Widens the pipe `fd` is, if it is one; nothing happens otherwise.
pub fn widen_pipe(fd: i32) {
    // SAFETY: fcntl on a descriptor number; a non-pipe or a refused size
    // only returns an error, which is of no consequence here.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}
/// A document longer than this is not one lpmx-pack wrote.
pub const DOCUMENT_LIMIT: u64 = 64 << 20;

/// What a pack stream carries, besides the bytes of blobs and files.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackDocument {
    pub kind: String,
    pub version: u32,
    /// The container's name on the source host.
    pub name: String,
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Platform,
    pub config: RunConfig,
    /// Bottom to top, as the manifest lists them.
    pub layers: Vec<PackedLayer>,
    /// Whether the layers' blobs follow (`--layers=all`), or the target
    /// must have the layers already (`--layers=none`).
    pub layers_included: bool,
    /// The environment file (`env`), as it is.
    pub env: String,
    /// The host programs file (`host-programs`), as it is.
    pub host_programs: String,
    /// The whiteouts file (`upper.whiteouts`), as it is.
    pub whiteouts: String,
}

impl Document for PackDocument {
    const KIND: &'static str = "lpmx.pack";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-pack";
}

/// A layer of the packed container's image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackedLayer {
    pub diff_id: Digest,
    /// The blob as stored (usually compressed).
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// Writes records, hashing every byte for the end record.
pub struct PackWriter<W: Write> {
    out: W,
    check: Box<Xxh3>,
}

impl<W: Write> PackWriter<W> {
    pub fn new(mut out: W) -> io::Result<PackWriter<W>> {
        let mut check = Box::new(Xxh3::new());
        out.write_all(MAGIC)?;
        check.update(MAGIC);
        Ok(PackWriter { out, check })
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.check.update(bytes);
        Ok(())
    }

    fn head(&mut self, tag: u8, len: u64) -> io::Result<()> {
        let mut head = [0u8; 9];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.put(&head)
    }

    pub fn document(&mut self, json: &[u8]) -> io::Result<()> {
        self.head(DOCUMENT, json.len() as u64)?;
        self.put(json)
    }

    /// Blob `digest` of `len` bytes from `reader`.
    pub fn blob(&mut self, digest: &Digest, len: u64, reader: &mut impl Read) -> io::Result<()> {
        self.head(BLOB, len)?;
        self.put(&digest.raw())?;
        let mut buf = vec![0; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = reader.read(&mut buf[..left.min(CHUNK as u64) as usize])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob {digest} ended early"),
                ));
            }
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// A writer of the upper layer's tar; `finish` it before `end`.
    pub fn upper(&mut self) -> UpperWriter<'_, W> {
        UpperWriter {
            pack: self,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// The end record; returns the inner writer, flushed.
    pub fn end(mut self) -> io::Result<W> {
        self.put(&[END])?;
        self.out.write_all(&self.check.digest128().to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The upper layer's tar, cut into chunks.
pub struct UpperWriter<'a, W: Write> {
    pack: &'a mut PackWriter<W>,
    buf: Vec<u8>,
}

impl<W: Write> UpperWriter<'_, W> {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.pack.head(UPPER, buf.len() as u64)?;
            self.pack.put(&buf)?;
            self.buf = buf;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and the empty chunk that ends the layer.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_chunk()?;
        self.pack.head(UPPER, 0)
    }
}

impl<W: Write> Write for UpperWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackStreamError {
    #[error("not an lpmx-pack stream (it does not start with LPMX-PACK)")]
    Magic,
    #[error("the stream ends early: the transfer was cut short")]
    Truncated,
    #[error("the stream is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot read the stream: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for PackStreamError {
    fn from(e: io::Error) -> PackStreamError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            PackStreamError::Truncated
        } else {
            PackStreamError::Io(e)
        }
    }
}

/// One record as read.
#[derive(Debug)]
pub enum Record {
    Document(Vec<u8>),
    /// A blob: its digest and length; read its bytes with [`PackReader::blob_data`].
    Blob(Digest, u64),
    /// The upper layer's first chunk: read it all with [`PackReader::upper`].
    Upper(u64),
    /// The end record, checked: nothing follows it.
    End,
}

/// Reads records, hashing every byte to check the end record.
pub struct PackReader<R: Read> {
    input: R,
    check: Box<Xxh3>,
    /// Bytes left in the current blob or upper chunk.
    left: u64,
}

impl<R: Read> PackReader<R> {
    /// Checks the magic and returns a reader of the records after it.
    pub fn new(mut input: R) -> Result<PackReader<R>, PackStreamError> {
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                PackStreamError::Magic
            } else {
                PackStreamError::Io(e)
            }
        })?;
        if &magic != MAGIC {
            return Err(PackStreamError::Magic);
        }
        let mut check = Box::new(Xxh3::new());
        check.update(&magic);
        Ok(PackReader {
            input,
            check,
            left: 0,
        })
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), PackStreamError> {
        self.input.read_exact(buf)?;
        self.check.update(buf);
        Ok(())
    }

    fn head(&mut self) -> Result<(u8, u64), PackStreamError> {
        let mut head = [0u8; 9];
        self.take(&mut head[..1])?;
        if head[0] == END {
            return Ok((END, 0));
        }
        self.take(&mut head[1..])?;
        let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
        Ok((head[0], len))
    }

    /// The next record. Call it only once the previous blob or upper layer
    /// has been read to its end.
    pub fn next_record(&mut self) -> Result<Record, PackStreamError> {
        debug_assert_eq!(self.left, 0);
        let (tag, len) = self.head()?;
        match tag {
            DOCUMENT => {
                if len > DOCUMENT_LIMIT {
                    return Err(PackStreamError::Corrupt(format!(
                        "a document of {len} bytes"
                    )));
                }
                let mut json = vec![0; len as usize];
                self.take(&mut json)?;
                Ok(Record::Document(json))
            }
            BLOB => {
                let mut raw = [0u8; 32];
                self.take(&mut raw)?;
                self.left = len;
                Ok(Record::Blob(Digest::from_raw(raw), len))
            }
            UPPER => {
                self.left = len;
                Ok(Record::Upper(len))
            }
            END => {
                let actual = self.check.digest128();
                let mut raw = [0u8; 16];
                self.input.read_exact(&mut raw)?;
                let expected = u128::from_le_bytes(raw);
                if expected != actual {
                    return Err(PackStreamError::Corrupt(format!(
                        "its bytes do not match its checksum (XXH3-128 {expected:032x} written, {actual:032x} read)"
                    )));
                }
                let mut extra = [0u8; 1];
                if self.input.read(&mut extra)? != 0 {
                    return Err(PackStreamError::Corrupt(
                        "data follows the end record".into(),
                    ));
                }
                Ok(Record::End)
            }
            other => Err(PackStreamError::Corrupt(format!(
                "unknown record type {:?}",
                char::from(other)
            ))),
        }
    }

    /// A reader of the current blob's bytes.
    pub fn blob_data(&mut self) -> BlobReader<'_, R> {
        BlobReader { pack: self }
    }

    /// A reader of the upper layer's tar, across its chunks, up to the
    /// empty chunk that ends it.
    pub fn upper(&mut self) -> UpperReader<'_, R> {
        UpperReader {
            pack: self,
            done: false,
        }
    }

    fn read_left(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.check.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

pub struct BlobReader<'a, R: Read> {
    pack: &'a mut PackReader<R>,
}

impl<R: Read> Read for BlobReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.pack.read_left(buf)
    }
}

pub struct UpperReader<'a, R: Read> {
    pack: &'a mut PackReader<R>,
    done: bool,
}

impl<R: Read> UpperReader<'_, R> {
    /// Reads what the tar reader left of the layer (its padding) up to
    /// the empty chunk.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(())
    }
}

impl<R: Read> Read for UpperReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if self.pack.left > 0 {
                return self.pack.read_left(buf);
            }
            let (tag, len) = self.pack.head().map_err(|e| match e {
                PackStreamError::Io(e) => e,
                PackStreamError::Truncated => io::ErrorKind::UnexpectedEof.into(),
                other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
            })?;
            if tag != UPPER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the stream is corrupt: the writable layer is cut off",
                ));
            }
            if len == 0 {
                self.done = true;
            }
            self.pack.left = len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut pack = PackWriter::new(Vec::new()).unwrap();
        pack.document(b"{}").unwrap();
        let blob = b"blob bytes";
        pack.blob(&Digest::of(blob), blob.len() as u64, &mut &blob[..])
            .unwrap();
        let mut upper = pack.upper();
        upper.write_all(&vec![7u8; CHUNK + 10]).unwrap();
        upper.finish().unwrap();
        pack.end().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), PackStreamError> {
        let corrupt = |what: &str| Err(PackStreamError::Corrupt(what.into()));
        let mut pack = PackReader::new(bytes)?;
        let Record::Document(doc) = pack.next_record()? else {
            return corrupt("document first");
        };
        let Record::Blob(digest, _) = pack.next_record()? else {
            return corrupt("blob second");
        };
        let mut blob = Vec::new();
        pack.blob_data().read_to_end(&mut blob)?;
        if digest != Digest::of(&blob) {
            return corrupt("blob digest");
        }
        let Record::Upper(_) = pack.next_record()? else {
            return corrupt("upper third");
        };
        let mut upper = Vec::new();
        pack.upper().read_to_end(&mut upper)?;
        match pack.next_record()? {
            Record::End => Ok((doc, blob, upper.len())),
            _ => corrupt("end last"),
        }
    }

    #[test]
    fn streams_round_trip() {
        let bytes = sample();
        let (doc, blob, upper) = read_all(&bytes).unwrap();
        assert_eq!(doc, b"{}");
        assert_eq!(blob, b"blob bytes");
        assert_eq!(upper, CHUNK + 10);
    }

    #[test]
    fn truncated_and_corrupt_streams_are_refused() {
        let bytes = sample();
        for cut in [0, 5, 12, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in [11, 30, bytes.len() / 2, bytes.len() - 3] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(read_all(&flipped).is_err(), "flipped at {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer),
            Err(PackStreamError::Corrupt(_))
        ));
    }
}
