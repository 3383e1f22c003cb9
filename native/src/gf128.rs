//! Multiplication by the primitive element α (= x) in GF(2^128), as XTS uses it.
//!
//! IEEE 1619-2018 §5.2 (unchanged from 1619-2007): the encrypted tweak T is multiplied by α^j
//! for the j-th 16-byte block of a data unit. The 16-byte value is read as a 128-bit number in
//! *little-endian* byte order (byte 0 least significant); multiplying by α shifts it left by
//! one bit, and when bit 127 falls out the result is reduced by the field polynomial
//! x^128 + x^7 + x^2 + x + 1, i.e. 0x87 is XORed into the low byte.
//!
//! This scalar version serves the portable backend and is the reference the SIMD versions
//! (`backend::aesni::mul_x*`, `backend::vaes::mul_x*`) are tested against.

/// The low part of the reduction polynomial x^7 + x^2 + x + 1.
pub const REDUCTION: u128 = 0x87;

/// Tweak block (16 bytes, IEEE 1619 byte order) as a 128-bit number.
#[inline(always)]
pub fn from_block(block: [u8; 16]) -> u128 {
    u128::from_le_bytes(block)
}

/// 128-bit number back to a 16-byte block.
#[inline(always)]
pub fn to_block(value: u128) -> [u8; 16] {
    value.to_le_bytes()
}

/// `t * α`. Branch-free, so the time taken does not depend on the (secret) tweak.
#[inline(always)]
pub fn mul_x(t: u128) -> u128 {
    let carry = t >> 127;
    (t << 1) ^ (carry.wrapping_neg() & REDUCTION)
}

/// `t * α^k`, one doubling at a time (tests and setup only).
pub fn mul_x_pow(mut t: u128, k: u32) -> u128 {
    for _ in 0..k {
        t = mul_x(t);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_without_carry_is_a_shift() {
        assert_eq!(mul_x(1), 2);
        assert_eq!(mul_x(0x4000_0000_0000_0000_0000_0000_0000_0000), 1 << 127);
    }

    #[test]
    fn carry_out_of_bit_127_reduces_by_0x87() {
        // IEEE 1619 §5.2: byte 15's top bit moves out and 0x87 goes into byte 0.
        let mut block = [0u8; 16];
        block[15] = 0x80;
        assert_eq!(to_block(mul_x(from_block(block))), {
            let mut b = [0u8; 16];
            b[0] = 0x87;
            b
        });
        assert_eq!(mul_x(u128::MAX), (u128::MAX << 1) ^ 0x87);
    }

    #[test]
    fn byte_order_is_little_endian() {
        // Byte 0's top bit carries into byte 1.
        let mut block = [0u8; 16];
        block[0] = 0x80;
        let mut expected = [0u8; 16];
        expected[1] = 0x01;
        assert_eq!(to_block(mul_x(from_block(block))), expected);
    }
}
