//! A data key expanded once and kept: the state behind the keyed handles (`xtsKeyNew` and
//! the `xtsKey*` functions in lib.rs and raw_calls.rs, an N-API external made in handle.rs).
//!
//! The free functions in `lib.rs` expand the key schedules (K1 encryption and decryption, K2
//! encryption) on every call, which costs more than decrypting one 4 KiB sector. A `SectorKey`
//! holds the expanded `XtsAes256` (its schedules are zeroized on drop) until `wipe()`, after
//! which every call is refused.

use crate::validate::{self, ArgError};
use crate::xts::{XtsAes256, XtsError};

/// Why `SectorKey::new` failed.
#[derive(Debug)]
pub enum KeyError {
    /// The key argument is bad (length, equal halves).
    Arg(ArgError),
    /// The XTS path forced for this thread or process cannot run (the message says why).
    Path(String),
}

impl KeyError {
    /// The bad argument, for tests.
    #[cfg(test)]
    pub fn arg(&self) -> Option<&'static str> {
        match self {
            KeyError::Arg(e) => Some(e.arg),
            KeyError::Path(_) => None,
        }
    }
}

/// An expanded XTS-AES-256 key, or nothing once wiped.
pub struct SectorKey {
    cipher: Option<XtsAes256>,
}

impl SectorKey {
    /// Validates `key` (64 bytes, halves differ) and expands it for this thread's active path
    /// (`Path::active`). A bad key is an `ArgError`; a forced path that cannot run is
    /// `XtsError::PathUnavailable`.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        let key = validate::key(key).map_err(KeyError::Arg)?;
        let cipher = XtsAes256::new(key).map_err(|e| match e {
            XtsError::PathUnavailable { message } => KeyError::Path(message),
            other => KeyError::Arg(ArgError::new("key", other.to_string())),
        })?;
        Ok(Self {
            cipher: Some(cipher),
        })
    }

    /// Zeroizes the key schedules now (dropping `XtsAes256` zeroizes them); later calls fail.
    pub fn wipe(&mut self) {
        self.cipher = None;
    }

    pub fn is_wiped(&self) -> bool {
        self.cipher.is_none()
    }

    /// The expanded key, or `None` once wiped.
    pub fn cipher(&self) -> Option<&XtsAes256> {
        self.cipher.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_keys_and_wipes() {
        assert_eq!(SectorKey::new(&[1u8; 32]).err().unwrap().arg(), Some("key"));
        assert_eq!(SectorKey::new(&[7u8; 64]).err().unwrap().arg(), Some("key"));
        let key: [u8; 64] = core::array::from_fn(|i| i as u8);
        let mut k = SectorKey::new(&key).unwrap();
        assert!(k.cipher().is_some());
        k.wipe();
        assert!(k.is_wiped() && k.cipher().is_none());
    }
}
