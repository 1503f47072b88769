//! WeChat's message push protocol, and datacube acting on it.
//!
//! # Layout
//! - [`sign`]: `signature` and `msg_signature` (sorted SHA-1).
//! - [`crypto`]: the AES safe/compatible mode (AES-256-CBC, 32-byte PKCS#7, appid tail).
//! - [`xml`]: push bodies byte for byte as WeChat writes them, and replies judged as WeChat
//!   judges them.

pub mod crypto;
pub mod sign;
pub mod xml;

pub use crypto::{AesKey, CryptoError};
pub use xml::{Mode, Push, PushKind, Verdict};
