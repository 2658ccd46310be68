//! Decoded metas of the entries each thread served last.
//!
//! Decoding a stored meta (zstd with the header dictionary, the HTTP/1
//! header parse, msgpack) is the largest cost of a small cache hit that is
//! not I/O. Each worker thread keeps the metas it decoded in a small
//! direct-mapped table, and a slot is used only for the exact version of
//! the entry it was decoded from: a refreshed, refetched or replaced
//! response has a new version and is decoded again. The table holds at
//! most [`SLOTS`] decoded metas per thread (about 1 KiB each for typical
//! headers) and never keeps a body alive.

use std::cell::RefCell;
use std::sync::Arc;

use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use pingora::prelude::*;

use super::Entry;

/// Slots per thread.
pub const SLOTS: usize = 1024;

struct Slot {
    key: HashBinary,
    version: u64,
    meta: Arc<CacheMeta>,
}

thread_local! {
    static TABLE: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

fn slot_of(key: &HashBinary) -> usize {
    // The key is a cryptographic hash: any of its bits index uniformly.
    usize::from(u16::from_le_bytes([key[0], key[1]])) % SLOTS
}

/// The decoded meta of `entry`, stored under `key`: from this thread's
/// table when the same version was decoded here before, else decoded now
/// (and remembered, replacing whatever shared its slot).
pub fn meta(key: &HashBinary, entry: &Entry) -> Result<Arc<CacheMeta>> {
    let index = slot_of(key);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        if table.is_empty() {
            table.resize_with(SLOTS, || None);
        }
        if let Some(slot) = &table[index] {
            if slot.key == *key && slot.version == entry.id() {
                return Ok(slot.meta.clone());
            }
        }
        let meta = Arc::new(entry.meta()?);
        table[index] = Some(Slot {
            key: *key,
            version: entry.id(),
            meta: meta.clone(),
        });
        Ok(meta)
    })
}
