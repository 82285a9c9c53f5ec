//! SHA_d-256, *Cryptography Engineering* §5.4.2: SHA-256 applied twice, the inner hash over the
//! message prefixed with one zero block (64 bytes), which defeats length extension. mirage-crypto
//! drops the prefix; [`ShaD::new`] takes the choice as an argument.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The zero block SHA_d-256 prefixes its input with (the SHA-256 block size).
const ZERO_BLOCK: [u8; 64] = [0; 64];

/// An incremental SHA_d-256 computation; the entropy pools are kept as these.
#[derive(Clone)]
pub struct ShaD {
    inner: Sha256,
    zero_prefix: bool,
}

impl ShaD {
    /// An empty hash: with `zero_prefix`, the book's SHA_d (0^512 prefixed), otherwise plain
    /// SHA-256(SHA-256(m)).
    pub fn new(zero_prefix: bool) -> ShaD {
        let mut inner = Sha256::new();
        if zero_prefix {
            inner.update(ZERO_BLOCK);
        }
        ShaD { inner, zero_prefix }
    }

    /// Appends `data` to the message.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The digest of the message so far; the hash is reset to empty.
    pub fn finalize_reset(&mut self) -> Zeroizing<[u8; 32]> {
        let fresh = ShaD::new(self.zero_prefix);
        let done = std::mem::replace(self, fresh);
        done.finalize()
    }

    /// The digest of the message.
    pub fn finalize(self) -> Zeroizing<[u8; 32]> {
        let inner: Zeroizing<[u8; 32]> = Zeroizing::new(self.inner.finalize().into());
        Zeroizing::new(Sha256::digest(inner.as_slice()).into())
    }
}

/// SHA_d-256 of the concatenation of `parts`.
pub fn sha_d(zero_prefix: bool, parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut h = ShaD::new(zero_prefix);
    for part in parts {
        h.update(part);
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn plain_double_sha256_of_empty_message() {
        // SHA-256("") = e3b0c442..., and SHA-256 of those 32 bytes is the well-known 5df6e0e2...
        assert_eq!(
            hex(sha_d(false, &[]).as_slice()),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }

    #[test]
    fn book_variant_hashes_the_zero_block_first() {
        let with_prefix = sha_d(true, &[b"abc"]);
        let spelled_out = sha_d(false, &[&[0u8; 64], b"abc"]);
        assert_eq!(with_prefix, spelled_out);
        assert_ne!(with_prefix, sha_d(false, &[b"abc"]));
    }

    #[test]
    fn incremental_equals_one_shot_and_reset_empties() {
        let mut h = ShaD::new(true);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finalize_reset(), sha_d(true, &[b"abc"]));
        assert_eq!(h.finalize(), sha_d(true, &[]));
    }
}
