//! The parse cache: statement text → what [`classify`] made of it, least recently used
//! evicted first. It serves simple queries and unnamed Parse messages by text; a named
//! prepared statement is held by its connection (Parse name → the `Arc` this returns), so
//! it never needs the cache again.
//!
//! Memory is bounded twice: by an entry count, and by a text size above which a statement
//! is classified but not kept (a long text is rarely sent twice, and would crowd out many
//! short ones). A refusal is cached too, so a client repeating garbage costs one parse.
//! The cache keeps the text as its key, literals and all, so its `Debug` shows counts only.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use super::{classify, Statement, Unparseable};

/// What one text classified to, shared with every holder of the same text.
pub type Classified = Result<Arc<[Statement]>, Unparseable>;

pub struct Cache {
    entries: LruCache<Box<str>, Classified>,
    max_text: usize,
    hits: u64,
    misses: u64,
}

impl Cache {
    /// At most `entries` texts, each at most `max_text` bytes long.
    pub fn new(entries: NonZeroUsize, max_text: usize) -> Self {
        Cache { entries: LruCache::new(entries), max_text, hits: 0, misses: 0 }
    }

    /// The statements of `sql`, from the cache when this text was seen before.
    pub fn classify(&mut self, sql: &str) -> Classified {
        if let Some(hit) = self.entries.get(sql) {
            self.hits += 1;
            return hit.clone();
        }
        self.misses += 1;
        let classified = classify(sql).map(Arc::from);
        if sql.len() <= self.max_text {
            self.entries.put(sql.into(), classified.clone());
        }
        classified
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that parsed (whether or not the result was then kept).
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Texts held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries.len())
            .field("capacity", &self.entries.cap())
            .field("max_text", &self.max_text)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}
