//! The Fortuna generator (*Cryptography Engineering* §9.4): AES-256 in counter mode under a key
//! that is replaced after every request, so output already handed out cannot be recomputed from
//! the generator's later state.
//!
//! State: a 32-byte key `K` (initially zero) and a 128-bit counter `C` (initially 0, which means
//! "never seeded"). `reseed(s)` sets `K = SHA_d(K ‖ s)` and `C = C + 1`. A request for `n` bytes
//! encrypts the counter blocks `C, C+1, …` (incrementing `C` once per block), returns the first
//! `n` bytes of `ceil(n/16)` blocks and then takes the next two blocks as the new key.

use crate::error::RngError;
use crate::hash::sha_d;
use crate::params::FortunaParams;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes256Enc as Aes256;
use zeroize::{Zeroize, Zeroizing};

/// AES block size in bytes.
pub const BLOCK: usize = 16;
/// One AES block.
type Block = Array<u8, aes::cipher::consts::U16>;
/// Counter blocks prepared and encrypted per batch: large enough for AES-NI's parallel rounds,
/// small enough to stay in L1 cache.
const BATCH_BLOCKS: usize = 64;
/// Blocks in the final batch (last output blocks, partial block, two key blocks).
const SCRATCH_BLOCKS: usize = 8;

/// The generator. Key material (the key bytes and the AES round keys) is wiped when it is
/// replaced and when the generator is dropped.
pub struct Generator {
    params: FortunaParams,
    key: Zeroizing<[u8; 32]>,
    cipher: Aes256,
    counter: u128,
}

impl Generator {
    /// An unseeded generator: key zero, counter zero.
    pub fn new(params: FortunaParams) -> Generator {
        let key = Zeroizing::new([0u8; 32]);
        let cipher = Aes256::new(Array::cast_from_core(&key));
        Generator { params, key, cipher, counter: 0 }
    }

    /// The parameters this generator runs with.
    pub fn params(&self) -> &FortunaParams {
        &self.params
    }

    /// Whether the generator has been seeded (its counter is not 0).
    pub fn is_seeded(&self) -> bool {
        self.counter != 0
    }

    /// The counter, `C` in the book.
    pub fn counter(&self) -> u128 {
        self.counter
    }

    /// The current key, `K` in the book (for tests and known-answer checks).
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// `K = SHA_d(K ‖ seed)`, `C = C + 1`.
    pub fn reseed(&mut self, seed: &[u8]) {
        let key = sha_d(self.params.hash_zero_prefix, &[self.key.as_slice(), seed]);
        self.set_key(&key);
        self.counter = self.counter.wrapping_add(1);
    }

    /// Fills `out` with the next `out.len()` bytes of output, then rekeys. Refuses while
    /// unseeded and when `out` is longer than [`FortunaParams::max_request`]. An empty `out`
    /// still rekeys (the book's `PseudoRandomData(0)`).
    pub fn generate(&mut self, out: &mut [u8]) -> Result<(), RngError> {
        if !self.is_seeded() {
            return Err(RngError::Unseeded);
        }
        if out.len() > self.params.max_request {
            return Err(RngError::RequestTooLarge);
        }
        // Full output blocks are encrypted in place, a batch at a time, except the last few:
        // those, the partial block and the two key blocks go through one scratch batch, so a
        // small request is a single call into the cipher.
        let (blocks, tail) = Block::slice_as_chunks_mut(out);
        let extra = usize::from(!tail.is_empty()) + 2;
        let in_place = blocks.len().saturating_sub(SCRATCH_BLOCKS - extra);
        let (direct, rest) = blocks.split_at_mut(in_place);
        for batch in direct.chunks_mut(BATCH_BLOCKS) {
            for block in batch.iter_mut() {
                *block = self.next_counter_block();
            }
            self.cipher.encrypt_blocks(batch);
        }
        let mut scratch = [Block::default(); SCRATCH_BLOCKS];
        let used = rest.len() + extra;
        for block in &mut scratch[..used] {
            *block = self.next_counter_block();
        }
        self.cipher.encrypt_blocks(&mut scratch[..used]);
        rest.copy_from_slice(&scratch[..rest.len()]);
        if !tail.is_empty() {
            let len = tail.len();
            tail.copy_from_slice(&scratch[rest.len()][..len]);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key[..BLOCK].copy_from_slice(&scratch[used - 2]);
        key[BLOCK..].copy_from_slice(&scratch[used - 1]);
        Block::slice_as_flattened_mut(&mut scratch[..used]).zeroize();
        self.set_key(&key);
        Ok(())
    }

    fn next_counter_block(&mut self) -> Block {
        let bytes = if self.params.counter_big_endian {
            self.counter.to_be_bytes()
        } else {
            self.counter.to_le_bytes()
        };
        self.counter = self.counter.wrapping_add(1);
        Array::from(bytes)
    }

    fn set_key(&mut self, key: &[u8; 32]) {
        self.key.copy_from_slice(key);
        // The old cipher's round keys are wiped by its Drop (aes's `zeroize` feature); the key
        // is borrowed, not copied, so no stray copy is left on the stack.
        self.cipher = Aes256::new(Array::cast_from_core(&self.key));
    }
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("mode", &self.params.mode)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::FortunaParams;

    /// One AES-256 block encryption with the key spelled out, as an independent reference.
    fn aes(key: &[u8; 32], block: [u8; 16]) -> [u8; 16] {
        let mut b = Array::from(block);
        Aes256::new(&Array::from(*key)).encrypt_block(&mut b);
        b.into()
    }

    #[test]
    fn aes256_fips197_vector() {
        // FIPS-197 appendix C.3.
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let ct = aes(&key, pt);
        let hex: String = ct.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "8ea2b7ca516745bfeafc49904b496089");
    }

    #[test]
    fn refuses_until_seeded() {
        let mut g = Generator::new(FortunaParams::BOOK);
        assert!(!g.is_seeded());
        assert_eq!(g.generate(&mut [0u8; 16]), Err(RngError::Unseeded));
        g.reseed(b"seed");
        assert!(g.is_seeded());
        assert_eq!(g.counter(), 1);
        assert!(g.generate(&mut [0u8; 16]).is_ok());
    }

    #[test]
    fn refuses_requests_over_the_limit() {
        for params in [FortunaParams::BOOK, FortunaParams::MIRAGE] {
            let mut g = Generator::new(params);
            g.reseed(b"x");
            let mut big = vec![0u8; params.max_request + 1];
            assert_eq!(g.generate(&mut big), Err(RngError::RequestTooLarge));
            assert!(g.generate(&mut big[..params.max_request]).is_ok());
        }
    }

    #[test]
    fn output_is_aes_of_counter_blocks_then_rekey() {
        for params in [FortunaParams::BOOK, FortunaParams::MIRAGE] {
            let mut g = Generator::new(params);
            g.reseed(b"known seed");
            let key = *g.key();
            let expect_key = sha_d(params.hash_zero_prefix, &[&[0u8; 32], b"known seed"]);
            assert_eq!(&key, &*expect_key);
            let ctr = |c: u128| if params.counter_big_endian { c.to_be_bytes() } else { c.to_le_bytes() };

            let mut out = [0u8; 20];
            g.generate(&mut out).unwrap();
            assert_eq!(out[..16], aes(&key, ctr(1)));
            assert_eq!(out[16..], aes(&key, ctr(2))[..4]);
            // Two blocks for the output, two for the new key.
            assert_eq!(g.counter(), 5);
            let mut new_key = [0u8; 32];
            new_key[..16].copy_from_slice(&aes(&key, ctr(3)));
            new_key[16..].copy_from_slice(&aes(&key, ctr(4)));
            assert_eq!(g.key(), &new_key);
        }
    }

    #[test]
    fn counter_byte_order_differs_between_modes() {
        let mut book = Generator::new(FortunaParams::BOOK);
        let mut mirage = Generator::new(FortunaParams { hash_zero_prefix: true, ..FortunaParams::MIRAGE });
        book.reseed(b"s");
        mirage.reseed(b"s");
        assert_eq!(book.key(), mirage.key());
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        book.generate(&mut a).unwrap();
        mirage.generate(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn every_request_size_matches_block_by_block() {
        // Around the scratch batch (8 blocks) and the in-place batches (64 blocks).
        let sizes = (0..=200).chain([1023, 1024, 1025, 1100, BATCH_BLOCKS * BLOCK * 3 + 7, 65_536]);
        for params in [FortunaParams::BOOK, FortunaParams::MIRAGE] {
            let ctr = |c: u128| if params.counter_big_endian { c.to_be_bytes() } else { c.to_le_bytes() };
            let mut g = Generator::new(params);
            g.reseed(b"batch");
            for n in sizes.clone() {
                let key = *g.key();
                let start = g.counter();
                let mut out = vec![0u8; n];
                g.generate(&mut out).unwrap();
                let blocks = n.div_ceil(BLOCK) as u128;
                for (i, chunk) in out.chunks(BLOCK).enumerate() {
                    let expect = aes(&key, ctr(start + i as u128));
                    assert_eq!(chunk, &expect[..chunk.len()], "size {n} block {i}");
                }
                let mut new_key = [0u8; 32];
                new_key[..16].copy_from_slice(&aes(&key, ctr(start + blocks)));
                new_key[16..].copy_from_slice(&aes(&key, ctr(start + blocks + 1)));
                assert_eq!(g.key(), &new_key, "size {n}");
                assert_eq!(g.counter(), start + blocks + 2);
            }
        }
    }

    #[test]
    fn empty_request_rekeys() {
        let mut g = Generator::new(FortunaParams::BOOK);
        g.reseed(b"e");
        let before = *g.key();
        g.generate(&mut []).unwrap();
        assert_ne!(g.key(), &before);
        assert_eq!(g.counter(), 3);
    }
}
