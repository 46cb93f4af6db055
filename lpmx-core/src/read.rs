//! Reading that keeps going where `Read::read` stops short.

use std::io::{self, Read};

/// Reads until `buf` is full or the input ends; the bytes read. Short
/// reads (pipes, decompressors, chunked streams) are retried, so callers
/// see whole buffers but for the last.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
