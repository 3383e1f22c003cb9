//! Quick throughput check of each backend, run on demand:
//! `cargo test --release bench_backends -- --ignored --nocapture`.
//! Batches of 256 sectors (1 MiB at 4 KiB), in place; MB/s = 10^6 bytes/s. On a shared machine
//! single runs drift, so each case runs `XTS_BENCH_TRIALS` (default 15) trials of 100 ms and
//! prints the best and the median. The package's benchmark (bench/, through Node) compares
//! against OpenSSL and node:crypto in the same run.
//! (A test rather than a cargo example: an example binary would have to link the N-API
//! symbols, which only exist inside a Node process.)

use std::time::{Duration, Instant};

use crate::backend::Path;
use crate::block_io::BlockIo;
use crate::tweak::TweakSource;
use crate::xts::{Direction, XtsAes256};

const SECTORS_PER_BATCH: usize = 256;

/// MB/s of one trial of about `duration`.
fn trial(
    cipher: &XtsAes256,
    direction: Direction,
    sector_size: usize,
    buf: &mut [u8],
    duration: Duration,
) -> f64 {
    let step = (sector_size / 512) as u64;
    let mut bytes = 0u64;
    let mut first = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..8 {
            let tweaks = TweakSource::plain64(first * step, step, SECTORS_PER_BATCH).unwrap();
            let mut io = BlockIo::in_place(buf).unwrap();
            cipher
                .process(direction, &tweaks, sector_size, &mut io)
                .unwrap();
            bytes += io.len() as u64;
            first += SECTORS_PER_BATCH as u64;
        }
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_backends() {
    let trials: usize = std::env::var("XTS_BENCH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let key: [u8; 64] = core::array::from_fn(|i| (i * 7 + 1) as u8);
    for sector_size in [4096usize, 512] {
        for direction in [Direction::Encrypt, Direction::Decrypt] {
            let mut buf = vec![0x5au8; sector_size * SECTORS_PER_BATCH];
            for path in Path::ALL {
                let Some(cipher) = XtsAes256::with_path(&key, path).expect("valid key") else {
                    println!("{:<12} not supported on this CPU", path.name());
                    continue;
                };
                let mut runs: Vec<f64> = (0..trials)
                    .map(|_| {
                        trial(
                            &cipher,
                            direction,
                            sector_size,
                            &mut buf,
                            Duration::from_millis(100),
                        )
                    })
                    .collect();
                runs.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "{:<12} {:>4} B sectors x{SECTORS_PER_BATCH} {:<7}: best {:>6.0} MB/s, median {:>6.0} MB/s",
                    path.name(),
                    sector_size,
                    format!("{direction:?}"),
                    runs[runs.len() - 1],
                    runs[runs.len() / 2],
                );
            }
        }
    }
}
