//! A small, fast, deterministic hasher for integer keys (the Fx hash of rustc). The engine's
//! maps are keyed by interned ids, so SipHash's protection against chosen keys buys nothing
//! here and costs a third of a hold's time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub type FxHashSet<K> = HashSet<K, FxBuild>;

/// A hasher for keys handed out in sequence (reservation ids): the low bits of the hash are the
/// key itself, so keys made one after the other land in neighbouring buckets and a sale's
/// inserts walk the table instead of touching a random cache line each; the top seven bits,
/// which the table compares first, are mixed, so that a probe still skips other keys at once.
/// Keys must stay below 2^57 (ids count from zero, one per reservation).
#[derive(Default, Clone, Copy)]
pub struct SeqHasher {
    hash: u64,
}

const LOW_BITS: u64 = (1 << 57) - 1;

impl Hasher for SeqHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut fx = FxHasher { hash: self.hash };
        fx.write(bytes);
        self.write_u64(fx.finish());
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = n.wrapping_mul(SEED);
        self.hash = (n & LOW_BITS) | (mixed & !LOW_BITS);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type SeqBuild = BuildHasherDefault<SeqHasher>;
/// A map keyed by ids handed out in sequence; see [`SeqHasher`].
pub type SeqHashMap<K, V> = HashMap<K, V, SeqBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn seq_hash(n: u64) -> u64 {
        SeqBuild::default().hash_one(n)
    }

    #[test]
    fn sequential_keys_keep_their_low_bits_and_mix_their_top_bits() {
        for n in [0u64, 1, 2, 1_000_000, (1 << 57) - 1] {
            assert_eq!(seq_hash(n) & LOW_BITS, n);
        }
        let tops: HashSet<u64> = (0..1_000u64).map(|n| seq_hash(n) >> 57).collect();
        assert!(tops.len() > 100, "only {} distinct top bits", tops.len());
    }
}
