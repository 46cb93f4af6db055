//! Path buffers and byte-path helpers: the union core's (`lpmx_union::path`).

pub use lpmx_union::path::{Buf, CAPACITY, cstr, is_under, starts_with};

/// Two 64-bit hashes of `bytes`, eight bytes at a time (a byte at a time
/// cost more than the lookups they key): the caches' keys, where a false
/// match needs both to collide.
pub fn hashes(bytes: &[u8]) -> (u64, u64) {
    fn mix(x: u64, k: u64) -> u64 {
        let x = x.wrapping_mul(k);
        x ^ (x >> 29)
    }
    let len = bytes.len() as u64;
    let (mut a, mut b) = (
        0x243f_6a88_85a3_08d3 ^ len,
        0x1319_8a2e_0370_7344 ^ len.rotate_left(32),
    );
    let mut word = |w: u64| {
        a = mix(a ^ w, 0x9e37_79b9_7f4a_7c15);
        b = mix(b ^ w.rotate_left(23), 0xc2b2_ae3d_27d4_eb4f);
    };
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        word(u64::from_le_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        word(u64::from_le_bytes(last));
    }
    (a, b)
}

/// A cache slot of two words, first hash then the second (which may carry
/// a tag or a value folded in): written and read with no lock and no
/// ordering, since a slot torn between two writers, or read while one
/// writes, matches no key.
pub struct Slot<'a>(pub &'a [core::sync::atomic::AtomicU64]);

impl Slot<'_> {
    pub fn fill(&self, a: u64, second: u64) {
        use core::sync::atomic::Ordering::Relaxed;
        self.0[0].store(0, Relaxed);
        self.0[1].store(second, Relaxed);
        self.0[0].store(a, Relaxed);
    }

    /// The second word, where the first is `a`.
    pub fn second(&self, a: u64) -> Option<u64> {
        use core::sync::atomic::Ordering::Relaxed;
        (self.0[0].load(Relaxed) == a).then(|| self.0[1].load(Relaxed))
    }
}
