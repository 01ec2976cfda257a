//! The server's resumption cache: rustls's in-memory cache, with each session stored at its
//! encoded size. rustls encodes a session (its secret and the client's certificate chain)
//! into a `Vec` grown by doubling, so about half of what it would keep is spare capacity; an
//! idle client's sessions are most of what its connections cost us beyond the connections
//! themselves.

use std::fmt;
use std::sync::Arc;

use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};

/// At most `size` sessions, the oldest dropped first (rustls's policy), each shrunk to fit.
pub(crate) struct SessionCache(Arc<ServerSessionMemoryCache>);

impl SessionCache {
    pub(crate) fn new(size: usize) -> Arc<Self> {
        Arc::new(Self(ServerSessionMemoryCache::new(size)))
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, mut key: Vec<u8>, mut value: Vec<u8>) -> bool {
        key.shrink_to_fit();
        value.shrink_to_fit();
        self.0.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.take(key)
    }

    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_kept_taken_once_and_the_oldest_dropped() {
        let cache = SessionCache::new(2);
        let mut grown = Vec::with_capacity(4096);
        grown.extend_from_slice(b"session one");
        assert!(cache.can_cache());
        assert!(cache.put(b"k1".to_vec(), grown));
        assert!(cache.put(b"k2".to_vec(), b"session two".to_vec()));
        assert_eq!(cache.get(b"k1").as_deref(), Some(&b"session one"[..]));
        assert_eq!(cache.take(b"k1").as_deref(), Some(&b"session one"[..]));
        assert_eq!(cache.take(b"k1"), None, "a session is taken once");
        assert!(cache.put(b"k3".to_vec(), b"session three".to_vec()));
        assert!(cache.put(b"k4".to_vec(), b"session four".to_vec()));
        assert_eq!(cache.get(b"k2"), None, "the oldest is dropped at the limit");
        assert_eq!(cache.get(b"k4").as_deref(), Some(&b"session four"[..]));
    }
}
