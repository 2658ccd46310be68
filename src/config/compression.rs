//! A route's `compression:`: which responses Palisade compresses on the
//! fly (gzip, brotli, zstd) and how hard.

use serde::Deserialize;

/// `routes[].compression`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Media types compressed (the part before `;`, lowercase).
    pub types: Vec<String>,
    /// Bodies declared shorter than this are left alone.
    pub min_length: u64,
    /// gzip level, 1 to 9; 0 turns gzip off.
    pub gzip: u32,
    /// brotli level, 1 to 11; 0 turns brotli off.
    pub brotli: u32,
    /// zstd level, 1 to 19; 0 turns zstd off.
    pub zstd: u32,
    /// Decompress an origin's coded response for a client that accepts no
    /// coding (instead of passing it through).
    pub decompress: bool,
}

/// Media types compressed by default.
pub const DEFAULT_TYPES: [&str; 9] = [
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "image/svg+xml",
    "application/wasm",
];

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            types: DEFAULT_TYPES.iter().map(ToString::to_string).collect(),
            min_length: 256,
            gzip: 6,
            brotli: 5,
            zstd: 3,
            decompress: false,
        }
    }
}
