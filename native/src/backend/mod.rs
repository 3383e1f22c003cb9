//! The three implementations of the XTS-AES-256 data path, and how one is chosen.
//!
//! - `vaes`: AVX-512F + VAES, four AES blocks per ZMM register and eight registers (32 blocks,
//!   512 bytes) in flight, so the AES units never wait on one block's 14-round latency chain.
//! - `aesni`: AES-NI on XMM registers, eight blocks in flight (the classic AES-NI pipelining).
//! - `portable`: the RustCrypto `aes` crate for CPUs without AES-NI and non-x86 targets. It is
//!   constant-time (bitsliced) in software, and uses the CPU's AES instructions itself where it
//!   can (e.g. ARMv8), so it is a correct fallback everywhere.
//!
//! The choice is made once per process from `is_x86_feature_detected!`, never at compile time,
//! so one build runs on every x86_64 machine.

#[cfg(target_arch = "x86_64")]
pub mod aesni;
pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod vaes;

use std::sync::OnceLock;

/// Encrypt or decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    VaesAvx512,
    AesNiX8,
    Portable,
}

impl Path {
    /// Every path, fastest first.
    pub const ALL: [Path; 3] = [Path::VaesAvx512, Path::AesNiX8, Path::Portable];

    /// The name reported to JavaScript by `cpuFeatures().path`.
    pub fn name(self) -> &'static str {
        match self {
            Path::VaesAvx512 => "vaes-avx512",
            Path::AesNiX8 => "aesni-x8",
            Path::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        let cpu = CpuFeatures::get();
        match self {
            Path::VaesAvx512 => cpu.vaes_path(),
            Path::AesNiX8 => cpu.aesni_path(),
            Path::Portable => true,
        }
    }

    /// The fastest path this CPU supports (computed once).
    pub fn best() -> Path {
        static BEST: OnceLock<Path> = OnceLock::new();
        *BEST.get_or_init(|| {
            Path::ALL
                .into_iter()
                .find(|p| p.is_supported())
                .unwrap_or(Path::Portable)
        })
    }
}

/// The CPU features the paths depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub aesni: bool,
    pub sse41: bool,
    pub avx512f: bool,
    pub vaes: bool,
}

impl CpuFeatures {
    /// Detected features of the running CPU (std caches the CPUID results).
    pub fn get() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                aesni: std::is_x86_feature_detected!("aes"),
                sse41: std::is_x86_feature_detected!("sse4.1"),
                avx512f: std::is_x86_feature_detected!("avx512f"),
                vaes: std::is_x86_feature_detected!("vaes"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures {
                aesni: false,
                sse41: false,
                avx512f: false,
                vaes: false,
            }
        }
    }

    /// AES-NI path: AES round instructions plus SSE4.1 (for the tweak doubling blend).
    pub fn aesni_path(&self) -> bool {
        self.aesni && self.sse41
    }

    /// VAES path: everything the AES-NI path needs (the tweaks are encrypted with it) plus
    /// AVX-512F and VAES.
    pub fn vaes_path(&self) -> bool {
        self.aesni_path() && self.avx512f && self.vaes
    }
}
