//! XTS-AES-256 on the RustCrypto `aes` crate: the fallback for CPUs without AES-NI and for
//! non-x86 targets. The `aes` crate is constant-time in software (fixsliced) and uses the
//! CPU's AES instructions itself where it knows how (e.g. ARMv8 crypto extensions).
//!
//! The tweak handling is plain Rust (`gf128::mul_x`), which also makes this backend the
//! reference the SIMD backends are cross-checked against.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use zeroize::Zeroize;

use super::Direction;
use crate::block_io::BlockIo;
use crate::gf128;
use crate::tweak::TweakSource;

type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// Blocks handed to the `aes` crate per call, so its own multi-block path can pipeline.
const CHUNK_BLOCKS: usize = 16;

/// K1 and K2 key schedules. `aes::Aes256` zeroizes itself on drop (crate feature
/// `zeroize`); boxing keeps the schedules from being copied when the cipher moves.
pub struct PortableXts {
    data: Box<Aes256>,
    tweak: Box<Aes256>,
}

impl PortableXts {
    pub fn new(key: &[u8; 64]) -> Self {
        let (k1, k2) = key.split_at(32);
        Self {
            data: Box::new(Aes256::new(GenericArray::from_slice(k1))),
            tweak: Box::new(Aes256::new(GenericArray::from_slice(k2))),
        }
    }

    /// Encrypts or decrypts `tweaks.units()` consecutive data units of `unit_blocks` blocks.
    /// The caller (`xts::XtsAes256::process`) has checked that `io` holds exactly that many.
    pub fn process(
        &self,
        direction: Direction,
        tweaks: &TweakSource<'_>,
        unit_blocks: usize,
        io: &mut BlockIo<'_>,
    ) {
        let mut buf = [Block::default(); CHUNK_BLOCKS];
        let mut masks = [0u128; CHUNK_BLOCKS];
        for unit in 0..tweaks.units() {
            // IEEE 1619 §5.3.1: T = E_K2(i), also when decrypting.
            let mut encrypted_tweak = Block::from(tweaks.block(unit));
            self.tweak.encrypt_block(&mut encrypted_tweak);
            let mut t = gf128::from_block(encrypted_tweak.into());
            encrypted_tweak.as_mut_slice().zeroize();

            let first = unit * unit_blocks;
            let mut b = 0;
            while b < unit_blocks {
                let count = CHUNK_BLOCKS.min(unit_blocks - b);
                for (i, (block, mask)) in
                    buf.iter_mut().zip(masks.iter_mut()).take(count).enumerate()
                {
                    *mask = t;
                    let input = gf128::from_block(io.read_block(first + b + i));
                    *block = Block::from(gf128::to_block(input ^ t));
                    t = gf128::mul_x(t);
                }
                match direction {
                    Direction::Encrypt => self.data.encrypt_blocks(&mut buf[..count]),
                    Direction::Decrypt => self.data.decrypt_blocks(&mut buf[..count]),
                }
                for (i, (block, mask)) in buf.iter().zip(&masks).take(count).enumerate() {
                    let output = gf128::from_block((*block).into()) ^ mask;
                    io.write_block(first + b + i, gf128::to_block(output));
                }
                b += count;
            }
            t.zeroize();
        }
        for block in buf.iter_mut() {
            block.as_mut_slice().zeroize();
        }
        masks.zeroize();
    }
}
