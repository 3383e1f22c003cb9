//! The three implementations of the XTS-AES-256 data path, and how one is chosen.
//!
//! - `vaes`: AVX-512F + VAES, four AES blocks per ZMM register and eight registers (32 blocks,
//!   512 bytes) in flight, so the AES units never wait on one block's 14-round latency chain.
//! - `vaes_avx2`: VAES on YMM registers with AVX2, two AES blocks per register and eight
//!   registers (16 blocks) in flight, for CPUs with VAES but no AVX-512 (Zen 3, Alder Lake).
//! - `aesni`: AES-NI on XMM registers, eight blocks in flight (the classic AES-NI pipelining).
//! - `portable`: the RustCrypto `aes` crate for CPUs without AES-NI and non-x86 targets. It is
//!   constant-time (bitsliced) in software, and uses the CPU's AES instructions itself where it
//!   can (e.g. ARMv8), so it is a correct fallback everywhere.
//!
//! The choice is made once per process from `is_x86_feature_detected!`, never at compile time,
//! so one build runs on every x86_64 machine. Benchmarks and tests can force a path the CPU
//! supports: for the process with `BLOCKVAULT_XTS_PATH`, or per thread with `xtsUsePath`.

#[cfg(target_arch = "x86_64")]
pub mod aesni;
pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod vaes;
#[cfg(target_arch = "x86_64")]
pub mod vaes_avx2;

use std::cell::Cell;
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
    VaesAvx2,
    AesNiX8,
    Portable,
}

/// The environment variable that forces a path for a whole process (benchmarks and tests
/// only): `vaes-avx512`, `aesni-x8` or `portable`.
pub const PATH_ENV: &str = "BLOCKVAULT_XTS_PATH";

impl Path {
    /// Every path, fastest first.
    pub const ALL: [Path; 4] = [
        Path::VaesAvx512,
        Path::VaesAvx2,
        Path::AesNiX8,
        Path::Portable,
    ];

    /// The name reported to JavaScript by `cpuFeatures().path`.
    pub fn name(self) -> &'static str {
        match self {
            Path::VaesAvx512 => "vaes-avx512",
            Path::VaesAvx2 => "vaes-avx2",
            Path::AesNiX8 => "aesni-x8",
            Path::Portable => "portable",
        }
    }

    /// The path called `name`, if any.
    pub fn from_name(name: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        self.unsupported_reason().is_none()
    }

    /// Why this CPU cannot run the path (the features it lacks), or `None` if it can.
    pub fn unsupported_reason(self) -> Option<String> {
        let cpu = CpuFeatures::get();
        let needs: &[(&str, bool)] = match self {
            Path::VaesAvx512 => &[
                ("AES-NI", cpu.aesni),
                ("SSE4.1", cpu.sse41),
                ("AVX-512F", cpu.avx512f),
                ("VAES", cpu.vaes),
            ],
            Path::VaesAvx2 => &[
                ("AES-NI", cpu.aesni),
                ("SSE4.1", cpu.sse41),
                ("AVX2", cpu.avx2),
                ("VAES", cpu.vaes),
            ],
            Path::AesNiX8 => &[("AES-NI", cpu.aesni), ("SSE4.1", cpu.sse41)],
            Path::Portable => &[],
        };
        let missing: Vec<&str> = needs
            .iter()
            .filter(|(_, present)| !present)
            .map(|(name, _)| *name)
            .collect();
        (!missing.is_empty()).then(|| format!("this CPU lacks {}", missing.join(", ")))
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

    /// `name` as a path this CPU can run, or the error that says why not.
    pub fn runnable(name: &str) -> Result<Path, String> {
        let path = Path::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Path::ALL.iter().map(|p| p.name()).collect();
            format!(
                "unknown XTS path {name:?}; the paths are {}",
                names.join(", ")
            )
        })?;
        match path.unsupported_reason() {
            None => Ok(path),
            Some(reason) => Err(format!(
                "the {name} XTS path cannot run here: {reason} (`cpuFeatures()` and \
                 `xtsPaths()` list what this CPU supports)"
            )),
        }
    }

    /// The path `BLOCKVAULT_XTS_PATH` forces for the whole process (read once), `Ok(None)` if
    /// it is unset or empty, or why the path it names cannot be used.
    pub fn from_env() -> Result<Option<Path>, String> {
        static FORCED: OnceLock<Result<Option<Path>, String>> = OnceLock::new();
        FORCED
            .get_or_init(|| match std::env::var(PATH_ENV) {
                Ok(name) if !name.is_empty() => Path::runnable(&name)
                    .map(Some)
                    .map_err(|e| format!("{PATH_ENV}={name}: {e}")),
                _ => Ok(None),
            })
            .clone()
    }

    /// The path new keys are expanded for on this thread: the thread's override
    /// (`set_thread_override`), else `BLOCKVAULT_XTS_PATH`, else the fastest this CPU runs.
    pub fn active() -> Result<Path, String> {
        if let Some(path) = THREAD_OVERRIDE.with(Cell::get) {
            return Ok(path);
        }
        Ok(Path::from_env()?.unwrap_or_else(Path::best))
    }

    /// Forces (or with `None`, stops forcing) the path of keys expanded on this thread from
    /// now on; returns the previous override. For benchmarks and tests: the caller checked
    /// that the path is runnable (`runnable`), and the kernels check again when a key is made.
    pub fn set_thread_override(path: Option<Path>) -> Option<Path> {
        THREAD_OVERRIDE.with(|cell| cell.replace(path))
    }
}

thread_local! {
    /// The path forced on this thread by `xtsUsePath` (benchmarks and tests), if any.
    static THREAD_OVERRIDE: Cell<Option<Path>> = const { Cell::new(None) };
}

/// The CPU features the paths depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub aesni: bool,
    pub sse41: bool,
    pub avx2: bool,
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
                avx2: std::is_x86_feature_detected!("avx2"),
                avx512f: std::is_x86_feature_detected!("avx512f"),
                vaes: std::is_x86_feature_detected!("vaes"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures {
                aesni: false,
                sse41: false,
                avx2: false,
                avx512f: false,
                vaes: false,
            }
        }
    }

    /// AES-NI path: AES round instructions plus SSE4.1 (`Path::unsupported_reason` lists the
    /// same features).
    pub fn aesni_path(&self) -> bool {
        self.aesni && self.sse41
    }

    /// VAES path: everything the AES-NI path needs (the tweaks are encrypted with it) plus
    /// AVX-512F and VAES.
    pub fn vaes_path(&self) -> bool {
        self.aesni_path() && self.avx512f && self.vaes
    }

    /// VAES-AVX2 path: everything the AES-NI path needs plus AVX2 and VAES.
    pub fn vaes_avx2_path(&self) -> bool {
        self.aesni_path() && self.avx2 && self.vaes
    }
}
