//! The data of a squashfs image's files, read without `backhand`'s file
//! reader: worker threads read the blocks with `pread` (no shared cursor,
//! no lock but the small fragment cache's) and decompress each straight
//! into the file's buffer. gzip, the compression mksquashfs and
//! Singularity use by default, is inflated with libdeflate (whole blocks,
//! the case it is fastest at); xz with liblzma (as `backhand` does, but
//! with limits), zstd and lz4 through `backhand`'s decompressors.
//! `backhand` still reads the tree.
//!
//! A file is its full blocks (each decompresses to the block size; a block
//! of size 0 is a hole), then either a last, shorter block or its tail in a
//! fragment block shared with other small files. Every size is checked
//! against the file's length, so a corrupt image gives an error, never a
//! file of the wrong length.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{DataSize, FilesystemReader, Fragment, SquashfsFileReader};

/// The memory the xz decoder may take for one block: squashfs blocks are
/// at most 1 MiB, and so are their dictionaries.
const XZ_MEMORY_LIMIT: u64 = 64 << 20;
/// A fragment's index when the file has none.
const NO_FRAGMENT: usize = 0xffff_ffff;
/// Decompressed fragment blocks kept for the files that follow: files are
/// read in order, and those sharing a fragment block are neighbours.
const FRAGMENT_CACHE: usize = 16;

/// Where the image's data is, and how it is compressed.
pub struct DataReader<'a> {
    file: &'a File,
    /// The image's offset in `file` (a SIF partition's start).
    start: u64,
    /// The image's length.
    len: u64,
    block_size: usize,
    compressor: Compressor,
    fragments: &'a [Fragment],
    cache: Mutex<VecDeque<(usize, Arc<Vec<u8>>)>>,
}

/// One thread's buffers and decompressor.
pub struct Inflater {
    deflate: libdeflater::Decompressor,
    compressed: Vec<u8>,
    other: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater {
            deflate: libdeflater::Decompressor::new(),
            compressed: Vec::new(),
            other: Vec::new(),
        }
    }
}

impl<'a> DataReader<'a> {
    /// The data of `filesystem`, the image at `start..start + len` of `file`.
    pub fn new(
        filesystem: &'a FilesystemReader<'_>,
        file: &'a File,
        start: u64,
        len: u64,
    ) -> DataReader<'a> {
        DataReader {
            file,
            start,
            len,
            block_size: filesystem.block_size as usize,
            compressor: filesystem.compressor,
            fragments: filesystem.fragments.as_deref().unwrap_or_default(),
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// The size of the image's blocks.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Appends the whole data of `file` to `out`.
    pub fn read_file(
        &self,
        file: &SquashfsFileReader,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut cursor = Cursor::new(file);
        while self.read_next(&mut cursor, inflater, out)? {}
        Ok(())
    }

    /// Appends the next piece of the cursor's file (a block, or the tail
    /// in its fragment) to `out`; false when there is none left.
    pub fn read_next(
        &self,
        cursor: &mut Cursor<'_>,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let file = cursor.file;
        let file_len = file.file_len();
        let offset = cursor.piece * self.block_size;
        if let Some(block) = file.block_sizes().get(cursor.piece) {
            let remaining = file_len.checked_sub(offset).ok_or_else(|| {
                corrupt(format!(
                    "it has more blocks than its length ({file_len} bytes) needs"
                ))
            })?;
            // Every block is whole but the last, when no fragment follows.
            let expected = remaining.min(self.block_size);
            self.read_block(cursor.position, *block, expected, inflater, out)?;
            cursor.position += u64::from(block.size());
        } else if !cursor.done && file.frag_index() != NO_FRAGMENT {
            self.read_fragment(file, offset, inflater, out)?;
            cursor.done = true;
        } else {
            return Ok(false);
        }
        cursor.piece += 1;
        Ok(true)
    }

    /// Appends the block at `position` (relative to the image), which
    /// holds exactly `expected` bytes of data.
    fn read_block(
        &self,
        position: u64,
        size: DataSize,
        expected: usize,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        if size.size() == 0 {
            // A hole: mksquashfs stores no data for a block of zeros.
            out.resize(out.len() + expected, 0);
            return Ok(());
        }
        self.read_raw(position, size.size() as usize, &mut inflater.compressed)?;
        if size.uncompressed() {
            if inflater.compressed.len() != expected {
                return Err(wrong_size(position, inflater.compressed.len(), expected));
            }
            out.extend_from_slice(&inflater.compressed);
            return Ok(());
        }
        self.inflate(position, expected, inflater, out)
    }

    /// Reads `size` bytes at `position` of the image into `into`.
    fn read_raw(&self, position: u64, size: usize, into: &mut Vec<u8>) -> io::Result<()> {
        // A compressed block is never larger than the data it holds.
        if size > self.block_size {
            return Err(corrupt(format!(
                "a block at byte {position} says it is {size} bytes, more than the block size \
                 {}",
                self.block_size
            )));
        }
        let end = position
            .checked_add(size as u64)
            .filter(|&end| end <= self.len);
        if end.is_none() {
            return Err(corrupt(format!(
                "a block at byte {position} lies past the image's end ({} bytes): it is \
                 truncated",
                self.len
            )));
        }
        into.resize(size, 0);
        self.file.read_exact_at(into, self.start + position)
    }

    /// Decompresses `inflater.compressed`, exactly `expected` bytes, onto
    /// the end of `out`.
    fn inflate(
        &self,
        position: u64,
        expected: usize,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let start = out.len();
        if matches!(self.compressor, Compressor::Gzip) {
            out.resize(start + expected, 0);
            let written = inflater
                .deflate
                .zlib_decompress(&inflater.compressed, &mut out[start..])
                .map_err(|e| {
                    corrupt(format!(
                        "the block at byte {position} cannot be decompressed: {e}"
                    ))
                })?;
            if written != expected {
                return Err(wrong_size(position, written, expected));
            }
            return Ok(());
        }
        self.decompress_other(inflater).map_err(|e| {
            corrupt(format!(
                "the block at byte {position} cannot be decompressed: {e}"
            ))
        })?;
        if inflater.other.len() != expected {
            return Err(wrong_size(position, inflater.other.len(), expected));
        }
        out.extend_from_slice(&inflater.other);
        Ok(())
    }

    /// Appends the tail of `file` from its fragment block; `offset` is
    /// where in the file the tail starts.
    fn read_fragment(
        &self,
        file: &SquashfsFileReader,
        offset: usize,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let index = file.frag_index();
        let tail = file
            .file_len()
            .checked_sub(offset)
            .ok_or_else(|| corrupt("it has more blocks than its length needs".to_owned()))?;
        let block = self.fragment_block(index, inflater)?;
        let from = file.block_offset() as usize;
        let data = from
            .checked_add(tail)
            .and_then(|to| block.get(from..to))
            .ok_or_else(|| {
                corrupt(format!(
                    "its tail ({tail} bytes at {from}) is outside its fragment block {index} \
                     ({} bytes)",
                    block.len()
                ))
            })?;
        out.extend_from_slice(data);
        Ok(())
    }

    /// Fragment block `index`, decompressed (kept for the next files).
    fn fragment_block(&self, index: usize, inflater: &mut Inflater) -> io::Result<Arc<Vec<u8>>> {
        let cached = |cache: &VecDeque<(usize, Arc<Vec<u8>>)>| {
            cache
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, block)| Arc::clone(block))
        };
        if let Some(block) = cached(&self.cache.lock().expect("fragment cache")) {
            return Ok(block);
        }
        let fragment = self.fragments.get(index).ok_or_else(|| {
            corrupt(format!(
                "its fragment {index} is not in the fragment table ({} entries)",
                self.fragments.len()
            ))
        })?;
        self.read_raw(
            fragment.start,
            fragment.size.size() as usize,
            &mut inflater.compressed,
        )?;
        let block = if fragment.size.uncompressed() {
            inflater.compressed.clone()
        } else {
            let mut block = Vec::with_capacity(self.block_size);
            self.inflate_fragment(fragment.start, inflater, &mut block)?;
            block
        };
        let block = Arc::new(block);
        let mut cache = self.cache.lock().expect("fragment cache");
        if cached(&cache).is_none() {
            if cache.len() == FRAGMENT_CACHE {
                cache.pop_front();
            }
            cache.push_back((index, Arc::clone(&block)));
        }
        Ok(block)
    }

    /// A fragment block's length is not recorded: it is whatever the
    /// block decompresses to, at most the block size.
    fn inflate_fragment(
        &self,
        position: u64,
        inflater: &mut Inflater,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let failed = |e: &dyn std::fmt::Display| {
            corrupt(format!(
                "the fragment block at byte {position} cannot be decompressed: {e}"
            ))
        };
        if matches!(self.compressor, Compressor::Gzip) {
            out.resize(self.block_size, 0);
            let written = inflater
                .deflate
                .zlib_decompress(&inflater.compressed, out)
                .map_err(|e| failed(&e))?;
            out.truncate(written);
            return Ok(());
        }
        self.decompress_other(inflater).map_err(|e| failed(&e))?;
        if inflater.other.len() > self.block_size {
            return Err(failed(&"it is larger than the block size"));
        }
        out.extend_from_slice(&inflater.other);
        Ok(())
    }

    /// Decompresses `inflater.compressed` into `inflater.other` with a
    /// compression other than gzip. The output stops a byte past the block
    /// size, so a block made to expand without end cannot take the memory.
    fn decompress_other(&self, inflater: &mut Inflater) -> Result<(), String> {
        inflater.other.clear();
        if matches!(self.compressor, Compressor::Xz) {
            // Its dictionary is never larger than the block size, so a block
            // asking for more memory than this is not a squashfs block.
            let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, 0)
                .map_err(|e| e.to_string())?;
            liblzma::read::XzDecoder::new_stream(inflater.compressed.as_slice(), stream)
                .take(self.block_size as u64 + 1)
                .read_to_end(&mut inflater.other)
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        // backhand's zstd and lz4 decoders write into the buffer's spare
        // capacity and no further (how they are written, not a promise:
        // the caller checks the length anyway).
        inflater.other.reserve(self.block_size + 1);
        DefaultCompressor
            .decompress(&inflater.compressed, &mut inflater.other, self.compressor)
            .map_err(|e| e.to_string())
    }
}

/// Where reading a file has got to.
pub struct Cursor<'f> {
    file: &'f SquashfsFileReader,
    /// The next block (or, after the last, the fragment).
    piece: usize,
    /// The next block's position in the image.
    position: u64,
    /// The fragment has been read.
    done: bool,
}

impl<'f> Cursor<'f> {
    pub fn new(file: &'f SquashfsFileReader) -> Cursor<'f> {
        Cursor {
            file,
            piece: 0,
            position: file.blocks_start(),
            done: false,
        }
    }
}

fn corrupt(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn wrong_size(position: u64, got: usize, expected: usize) -> io::Error {
    corrupt(format!(
        "the block at byte {position} holds {got} bytes where {expected} belong"
    ))
}
