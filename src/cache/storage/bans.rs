//! Bans, as Varnish has them: a pattern over stored URLs that removes
//! every response stored before the ban and matching it, at O(1) cost to
//! the purge itself.
//!
//! A ban applies to entries whose version is below the store's version
//! counter when the ban was made, so what is stored afterwards is never
//! banned. It is evaluated lazily — a lookup that finds a banned entry
//! drops it and answers as if it were not there — while a background sweep
//! (the "ban lurker") walks the store once, removes what matches, and then
//! retires the ban. Until then every lookup checks the active bans, which
//! costs one `ArcSwap` load when there are none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use regex::Regex;

use super::Entry;

/// One ban.
#[derive(Debug)]
pub struct Ban {
    /// Its number, for the admin API.
    pub id: u64,
    /// The pattern as given.
    pub pattern: Box<str>,
    regex: Regex,
    /// Entries with a version below this are subject to the ban.
    below_version: u64,
    /// When it was made.
    pub created: SystemTime,
    removed: AtomicU64,
    swept: AtomicBool,
}

impl Ban {
    /// Whether the stored response `url`, version `version`, is banned.
    pub fn bans(&self, url: &str, version: u64) -> bool {
        version < self.below_version && self.regex.is_match(url)
    }

    /// Whether `url` matches the pattern (for responses still arriving).
    pub fn matches_url(&self, url: &str) -> bool {
        self.regex.is_match(url)
    }

    /// Counts one removed response.
    pub fn count_removal(&self) {
        self.removed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many stored responses it removed so far.
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// Whether the background sweep has finished (the ban is then retired).
    pub fn swept(&self) -> bool {
        self.swept.load(Ordering::Acquire)
    }
}

/// The active bans.
#[derive(Default)]
pub struct BanList {
    active: ArcSwap<Vec<Arc<Ban>>>,
    next_id: AtomicU64,
    /// Recently retired bans, for the admin API (the last 32).
    retired: parking_lot::Mutex<Vec<Arc<Ban>>>,
}

/// How many retired bans the admin API still shows.
const RETIRED_KEPT: usize = 32;

impl BanList {
    /// Adds a ban on `regex`, for entries below `below_version`.
    pub fn add(&self, pattern: &str, regex: Regex, below_version: u64) -> Arc<Ban> {
        let ban = Arc::new(Ban {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            pattern: pattern.into(),
            regex,
            below_version,
            created: SystemTime::now(),
            removed: AtomicU64::new(0),
            swept: AtomicBool::new(false),
        });
        self.active.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(ban.clone());
            list
        });
        ban
    }

    /// The ban that bans the stored response `entry`, if any (one
    /// `ArcSwap` load when there are no bans).
    pub fn banning(&self, entry: &Entry) -> Option<Arc<Ban>> {
        let active = self.active.load();
        if active.is_empty() {
            return None;
        }
        let url = entry.url();
        active.iter().find(|b| b.bans(url, entry.id())).cloned()
    }

    /// Retires `ban` once its sweep is done.
    pub fn retire(&self, ban: &Arc<Ban>) {
        ban.swept.store(true, Ordering::Release);
        self.active.rcu(|list| {
            list.iter()
                .filter(|b| !Arc::ptr_eq(b, ban))
                .cloned()
                .collect::<Vec<_>>()
        });
        let mut retired = self.retired.lock();
        retired.push(ban.clone());
        if retired.len() > RETIRED_KEPT {
            retired.remove(0);
        }
    }

    /// The active bans, then the recently retired ones.
    pub fn list(&self) -> Vec<Arc<Ban>> {
        let mut out: Vec<Arc<Ban>> = self.active.load().iter().cloned().collect();
        out.extend(self.retired.lock().iter().rev().cloned());
        out
    }
}
