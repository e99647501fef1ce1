//! A settings cache shared by the routing actors: each key's value is loaded once, by the
//! first caller, while the others wait for the same load (a thousand conversations starting
//! together take one database connection, not a thousand), until [`OnceMap::forget`].

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct OnceMap<K, V> {
    entries: Mutex<HashMap<K, Arc<tokio::sync::OnceCell<Arc<V>>>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Copy, V> OnceMap<K, V> {
    /// The value if it is loaded.
    pub fn cached(&self, key: K) -> Option<Arc<V>> {
        self.entries.lock().ok()?.get(&key)?.get().cloned()
    }

    /// The value, loaded by `load` unless another caller has loaded it or is loading it.
    pub async fn get<E, F>(&self, key: K, load: impl FnOnce() -> F) -> Result<Arc<V>, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let cell = match self.entries.lock() {
            Ok(mut entries) => entries.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        };
        cell.get_or_try_init(|| async { load().await.map(Arc::new) })
            .await
            .cloned()
    }

    /// After any change: every value is loaded again on its next use.
    pub fn forget(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
