//! Known-answer and cross-check tests of the whole cipher (every backend this CPU can run).

mod bench;
mod ieee1619_vectors;

use crate::backend::Path;
use crate::block_io::BlockIo;
use crate::tweak::TweakSource;
use crate::xts::{Direction, XtsAes256, XtsError};
use ieee1619_vectors::{plaintext, KEY_HEX, VECTORS};

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn key64(bytes: &[u8]) -> [u8; 64] {
    bytes.try_into().unwrap()
}

/// Every path this CPU can run, each with its cipher for `key`.
fn ciphers(key: &[u8; 64]) -> Vec<XtsAes256> {
    let ciphers: Vec<XtsAes256> = Path::ALL
        .into_iter()
        .filter_map(|p| XtsAes256::with_path(key, p).unwrap())
        .collect();
    assert!(ciphers.iter().any(|c| c.path() == Path::Portable));
    ciphers
}

/// splitmix64: a small deterministic generator for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn key(&mut self) -> [u8; 64] {
        loop {
            let k = key64(&self.bytes(64));
            if k[..32] != k[32..] {
                return k;
            }
        }
    }
}

fn run(
    cipher: &XtsAes256,
    direction: Direction,
    tweaks: &TweakSource<'_>,
    unit: usize,
    data: &[u8],
) -> Vec<u8> {
    cipher
        .process_to_vec(direction, tweaks, unit, data)
        .unwrap_or_else(|e| panic!("{:?}: {e}", cipher.path()))
}

#[test]
fn ieee1619_vectors_10_to_14_every_path_explicit_tweak() {
    let key = key64(&hex(KEY_HEX));
    let pt = plaintext();
    for cipher in ciphers(&key) {
        for v in &VECTORS {
            let ct = hex(v.ciphertext_hex);
            let mut tweak = [0u8; 16];
            tweak[..8].copy_from_slice(&v.sequence.to_le_bytes());
            let tweaks = TweakSource::explicit(&tweak).unwrap();
            let path = cipher.path();
            assert_eq!(
                run(&cipher, Direction::Encrypt, &tweaks, 512, &pt),
                ct,
                "vector {} encrypt on {path:?}",
                v.number
            );
            assert_eq!(
                run(&cipher, Direction::Decrypt, &tweaks, 512, &ct),
                pt,
                "vector {} decrypt on {path:?}",
                v.number
            );
        }
    }
}

#[test]
fn ieee1619_vectors_10_to_14_as_plain64_512_byte_sectors() {
    // With 512-byte sectors the plain64 tweak of sector n is n itself, so the vectors are
    // sectors 0xff, 0xffff, ... of a dm-crypt volume.
    let key = key64(&hex(KEY_HEX));
    let pt = plaintext();
    for cipher in ciphers(&key) {
        for v in &VECTORS {
            let tweaks = TweakSource::plain64(v.sequence, 1, 1).unwrap();
            let ct = run(&cipher, Direction::Encrypt, &tweaks, 512, &pt);
            assert_eq!(ct, hex(v.ciphertext_hex), "vector {}", v.number);
        }
    }
}

#[test]
fn ieee1619_vectors_in_one_batch_and_in_place() {
    // All five vectors as one call of five data units, in place.
    let key = key64(&hex(KEY_HEX));
    let mut tweak_bytes = Vec::new();
    let mut expected = Vec::new();
    for v in &VECTORS {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&v.sequence.to_le_bytes());
        tweak_bytes.extend_from_slice(&t);
        expected.extend(hex(v.ciphertext_hex));
    }
    let tweaks = TweakSource::explicit(&tweak_bytes).unwrap();
    for cipher in ciphers(&key) {
        let mut buf: Vec<u8> = (0..5).flat_map(|_| plaintext()).collect();
        let mut io = BlockIo::in_place(&mut buf).unwrap();
        cipher
            .process(Direction::Encrypt, &tweaks, 512, &mut io)
            .unwrap();
        assert_eq!(buf, expected, "{:?}", cipher.path());
        let mut io = BlockIo::in_place(&mut buf).unwrap();
        cipher
            .process(Direction::Decrypt, &tweaks, 512, &mut io)
            .unwrap();
        assert_eq!(buf, (0..5).flat_map(|_| plaintext()).collect::<Vec<u8>>());
    }
}

#[test]
fn simd_paths_match_portable_on_random_sectors() {
    let mut rng = Rng(0x5eed_0001);
    let batch_lengths = [1usize, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257];
    for &sector_size in &[512usize, 4096] {
        let step = (sector_size / 512) as u64;
        for &sectors in &batch_lengths {
            let key = rng.key();
            let all = ciphers(&key);
            let portable = all.iter().find(|c| c.path() == Path::Portable).unwrap();
            let max_first = u64::MAX / step - sectors as u64;
            let first = match rng.below(3) {
                0 => rng.below(1 << 20),
                1 => max_first - rng.below(16),
                _ => rng.below(max_first),
            };
            let tweaks = TweakSource::plain64(first * step, step, sectors).unwrap();
            let data = rng.bytes(sector_size * sectors);
            let expected_ct = run(portable, Direction::Encrypt, &tweaks, sector_size, &data);
            let expected_pt = run(portable, Direction::Decrypt, &tweaks, sector_size, &data);
            for cipher in &all {
                let path = cipher.path();
                let ct = run(cipher, Direction::Encrypt, &tweaks, sector_size, &data);
                assert_eq!(ct, expected_ct, "{path:?} {sector_size}x{sectors} encrypt");
                let pt = run(cipher, Direction::Decrypt, &tweaks, sector_size, &data);
                assert_eq!(pt, expected_pt, "{path:?} {sector_size}x{sectors} decrypt");
                let back = run(cipher, Direction::Decrypt, &tweaks, sector_size, &ct);
                assert_eq!(back, data, "{path:?} round trip");
            }
        }
    }
}

#[test]
fn simd_paths_match_portable_on_every_small_data_unit_size() {
    // Units that are not a multiple of the 8- or 32-block pipelines exercise the tails.
    let mut rng = Rng(0x5eed_0002);
    let mut sizes: Vec<usize> = (1..=70).map(|b| 16 * b).collect();
    sizes.extend([4096 - 16, 4096 + 16, 8192 + 48, 1 << 20]);
    for unit in sizes {
        let units = if unit >= 1 << 20 {
            1
        } else {
            1 + rng.below(11) as usize
        };
        let key = rng.key();
        let tweak_bytes = rng.bytes(16 * units);
        let tweaks = TweakSource::explicit(&tweak_bytes).unwrap();
        let data = rng.bytes(unit * units);
        let all = ciphers(&key);
        let portable = all.iter().find(|c| c.path() == Path::Portable).unwrap();
        let expected_ct = run(portable, Direction::Encrypt, &tweaks, unit, &data);
        for cipher in &all {
            let ct = run(cipher, Direction::Encrypt, &tweaks, unit, &data);
            assert_eq!(ct, expected_ct, "{:?} unit {unit} x{units}", cipher.path());
            let back = run(cipher, Direction::Decrypt, &tweaks, unit, &ct);
            assert_eq!(back, data, "{:?} unit {unit} round trip", cipher.path());
        }
    }
}

#[test]
fn plain64_agrees_with_explicit_tweaks() {
    let mut rng = Rng(0x5eed_0003);
    for &sector_size in &[512usize, 4096] {
        let step = (sector_size / 512) as u64;
        let sectors = 5;
        let first_sector = rng.below(1 << 40);
        let key = rng.key();
        let data = rng.bytes(sector_size * sectors);
        let mut tweak_bytes = Vec::new();
        for s in 0..sectors as u64 {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&((first_sector + s) * step).to_le_bytes());
            tweak_bytes.extend_from_slice(&t);
        }
        let explicit = TweakSource::explicit(&tweak_bytes).unwrap();
        let plain = TweakSource::plain64(first_sector * step, step, sectors).unwrap();
        for cipher in ciphers(&key) {
            for direction in [Direction::Encrypt, Direction::Decrypt] {
                assert_eq!(
                    run(&cipher, direction, &plain, sector_size, &data),
                    run(&cipher, direction, &explicit, sector_size, &data),
                    "{:?} {direction:?} {sector_size}",
                    cipher.path()
                );
            }
        }
    }
}

#[test]
fn a_4096_byte_sector_is_eight_512_byte_data_units_only_in_its_tweak() {
    // dm-crypt plain64 with 4096-byte sectors: sector n has tweak 8n and the tweak then
    // advances per 16-byte block across the whole 4096 bytes (not restarting every 512).
    let mut rng = Rng(0x5eed_0004);
    let key = rng.key();
    let data = rng.bytes(4096);
    let cipher = XtsAes256::new(&key).unwrap();
    let as_4096 = run(
        &cipher,
        Direction::Encrypt,
        &TweakSource::plain64(8 * 3, 8, 1).unwrap(),
        4096,
        &data,
    );
    let mut tweak = [0u8; 16];
    tweak[0] = 24;
    let explicit = run(
        &cipher,
        Direction::Encrypt,
        &TweakSource::explicit(&tweak).unwrap(),
        4096,
        &data,
    );
    assert_eq!(as_4096, explicit);
    let as_512 = run(
        &cipher,
        Direction::Encrypt,
        &TweakSource::plain64(24, 1, 8).unwrap(),
        512,
        &data,
    );
    assert_eq!(as_4096[..512], as_512[..512]);
    assert_ne!(as_4096[512..], as_512[512..]);
}

#[test]
fn in_place_equals_out_of_place() {
    let mut rng = Rng(0x5eed_0005);
    let key = rng.key();
    let data = rng.bytes(4096 * 9);
    let tweaks = TweakSource::plain64(800, 8, 9).unwrap();
    for cipher in ciphers(&key) {
        let mut out = vec![0u8; data.len()];
        let mut io = BlockIo::copy(&data, &mut out).unwrap();
        cipher
            .process(Direction::Encrypt, &tweaks, 4096, &mut io)
            .unwrap();
        let mut in_place = data.clone();
        let mut io = BlockIo::in_place(&mut in_place).unwrap();
        cipher
            .process(Direction::Encrypt, &tweaks, 4096, &mut io)
            .unwrap();
        assert_eq!(out, in_place, "{:?}", cipher.path());
    }
}

#[test]
fn cipher_rejects_equal_halves_and_bad_layouts() {
    let key = [9u8; 64];
    assert_eq!(XtsAes256::new(&key).err(), Some(XtsError::EqualKeyHalves));
    let key = Rng(1).key();
    let cipher = XtsAes256::new(&key).unwrap();
    let tweaks = TweakSource::plain64(0, 1, 2).unwrap();
    let data = vec![0u8; 1024];
    for unit in [0, 8, 500, (1 << 20) + 16] {
        assert_eq!(
            cipher.process_to_vec(Direction::Encrypt, &tweaks, unit, &data),
            Err(XtsError::BadDataUnit { unit_bytes: unit })
        );
    }
    assert!(matches!(
        cipher.process_to_vec(Direction::Encrypt, &tweaks, 256, &data),
        Err(XtsError::LengthMismatch { .. })
    ));
    let none = TweakSource::plain64(0, 1, 0).unwrap();
    assert_eq!(
        cipher.process_to_vec(Direction::Encrypt, &none, 512, &[]),
        Ok(vec![])
    );
}

#[test]
fn active_path_is_reported_and_used() {
    let key = Rng(2).key();
    let cipher = XtsAes256::new(&key).unwrap();
    // The fastest path, unless BLOCKVAULT_XTS_PATH forces one for this test run.
    assert_eq!(cipher.path(), Path::active().unwrap());
    assert_eq!(
        Path::active().unwrap(),
        Path::from_env().unwrap().unwrap_or_else(Path::best)
    );
    assert!(Path::best().is_supported());
}

#[test]
fn every_supported_path_can_be_forced_per_thread() {
    let key = Rng(3).key();
    let data = Rng(4).bytes(4096 * 3);
    let tweaks = TweakSource::plain64(80, 8, 3).unwrap();
    let reference = run(
        &XtsAes256::with_path(&key, Path::Portable).unwrap().unwrap(),
        Direction::Encrypt,
        &tweaks,
        4096,
        &data,
    );
    for path in Path::ALL {
        match path.unsupported_reason() {
            Some(reason) => {
                // Not runnable here: refused by name with the reason, and never forced.
                println!("{}: skipped, {reason}", path.name());
                let err = Path::runnable(path.name()).unwrap_err();
                assert!(err.contains(&reason), "{err}");
            }
            None => {
                assert_eq!(Path::runnable(path.name()), Ok(path));
                let previous = Path::set_thread_override(Some(path));
                let cipher = XtsAes256::new(&key).unwrap();
                Path::set_thread_override(previous);
                assert_eq!(cipher.path(), path);
                let ct = run(&cipher, Direction::Encrypt, &tweaks, 4096, &data);
                assert_eq!(ct, reference, "{}", path.name());
            }
        }
    }
    // Another thread does not see this thread's override.
    Path::set_thread_override(Some(Path::Portable));
    let other = std::thread::spawn(Path::active).join().unwrap();
    Path::set_thread_override(None);
    assert_eq!(other, Path::active());
}

#[test]
fn path_names_round_trip_and_unknown_names_are_refused() {
    for path in Path::ALL {
        assert_eq!(Path::from_name(path.name()), Some(path));
    }
    let err = Path::runnable("vaes").unwrap_err();
    assert!(err.contains("unknown XTS path \"vaes\""), "{err}");
    assert!(
        err.contains("vaes-avx512, vaes-avx2, aesni-x8, portable"),
        "{err}"
    );
    assert_eq!(Path::Portable.unsupported_reason(), None);
}

/// A keyed handle (a `SectorKey` expanded once, number sector) gives the free functions' output (a
/// key expanded per call, bigint sector), over random keys, sectors, sizes and batches.
#[test]
fn keyed_equals_per_call_key() {
    use crate::keyed::SectorKey;
    use crate::validate;
    let mut rng = Rng(0x5eed_00c7);
    for _ in 0..64 {
        let key = rng.key();
        let keyed = SectorKey::new(&key).unwrap();
        for _ in 0..4 {
            let sector_size = if rng.below(2) == 0 { 512 } else { 4096 };
            let sectors = 1 + rng.below(5) as usize;
            let first = rng.below(1 << 53);
            let data = rng.bytes(sector_size * sectors);
            for direction in [Direction::Encrypt, Direction::Decrypt] {
                // Free-function path: bigint sector, key expanded for this call.
                let words = [first];
                let big = validate::first_sector(false, &words).unwrap();
                let tweaks = validate::sector_tweaks(big, sector_size, "data", data.len()).unwrap();
                let fresh = XtsAes256::new(&key).unwrap();
                let expected = run(&fresh, direction, &tweaks, sector_size, &data);
                // Keyed path: number sector, the kept schedules; in place and out of place.
                let n = validate::first_sector_number(first as f64).unwrap();
                let tweaks = validate::sector_tweaks(n, sector_size, "src", data.len()).unwrap();
                let cipher = keyed.cipher().unwrap();
                let mut out = vec![0u8; data.len()];
                let mut io = BlockIo::copy(&data, &mut out).unwrap();
                cipher
                    .process(direction, &tweaks, sector_size, &mut io)
                    .unwrap();
                assert_eq!(out, expected);
                let mut in_place = data.clone();
                let mut io = BlockIo::in_place(&mut in_place).unwrap();
                cipher
                    .process(direction, &tweaks, sector_size, &mut io)
                    .unwrap();
                assert_eq!(in_place, expected);
            }
        }
    }
}
