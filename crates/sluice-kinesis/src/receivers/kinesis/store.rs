//! Where shard checkpoints are kept: the storage extension (or memory) for
//! a lone instance, the PostgreSQL lease table for several.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_core::KeyValueStore;

use super::leases::LeaseTable;
use super::shards::Checkpoint;

/// A failed checkpoint write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaveError {
    /// The lease is no longer this instance's: stop reading the shard.
    Lost,
    /// The write failed; the position is kept and written again later.
    Failed(String),
}

/// Checkpoints of a lone instance: in the storage extension's key-value
/// store when one is configured, always also in memory.
pub(crate) struct LocalStore {
    kv: Option<Arc<dyn KeyValueStore>>,
    memory: Mutex<HashMap<String, Checkpoint>>,
}

/// The key of a shard's checkpoint: `shard_<id>` (shard ids are letters,
/// digits, '-' and '_' already).
fn key(shard: &str) -> String {
    sluice_core::file_storage::storage_safe(&format!("shard_{shard}"))
}

impl LocalStore {
    pub(crate) fn new(kv: Option<Arc<dyn KeyValueStore>>) -> LocalStore {
        LocalStore {
            kv,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The checkpoints of `shards` (unknown or unreadable ones left out,
    /// unreadable ones logged).
    pub(crate) async fn load(&self, shards: &[String]) -> HashMap<String, Checkpoint> {
        let mut out = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(kv) = self.kv.clone() else {
            return out;
        };
        let missing: Vec<String> = shards
            .iter()
            .filter(|s| !out.contains_key(*s))
            .cloned()
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for shard in missing {
                match kv.get(&key(&shard)) {
                    Ok(Some(v)) => found.push((shard, Ok(v))),
                    Ok(None) => {}
                    Err(e) => found.push((shard, Err(e.to_string()))),
                }
            }
            found
        })
        .await
        .unwrap_or_default();
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        for (shard, value) in found {
            let parsed = value
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|v| {
                    std::str::from_utf8(&v)
                        .ok()
                        .and_then(Checkpoint::decode)
                        .ok_or_else(|| {
                            format!("unreadable value {:?}", String::from_utf8_lossy(&v))
                        })
                });
            match parsed {
                Ok(c) => {
                    memory.insert(shard.clone(), c.clone());
                    out.insert(shard, c);
                }
                Err(e) => tracing::error!(
                    shard = %shard,
                    error = %e,
                    "ignoring a stored Kinesis checkpoint; the shard starts at the initial position"
                ),
            }
        }
        out
    }

    pub(crate) async fn save(&self, shard: &str, c: &Checkpoint) -> Result<(), SaveError> {
        if let Some(kv) = self.kv.clone() {
            let k = key(shard);
            let v = c.encode();
            tokio::task::spawn_blocking(move || kv.set(&k, v.as_bytes()))
                .await
                .map_err(|e| SaveError::Failed(e.to_string()))?
                .map_err(|e| SaveError::Failed(e.to_string()))?;
        }
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard.to_string(), c.clone());
        Ok(())
    }
}

/// The checkpoint writer a reader is given.
#[derive(Clone)]
pub(crate) enum ShardStore {
    Local(Arc<LocalStore>),
    /// Written under the lease taken with this counter.
    Lease {
        table: Arc<LeaseTable>,
        counter: i64,
    },
}

impl ShardStore {
    pub(crate) async fn save(&self, shard: &str, c: &Checkpoint) -> Result<(), SaveError> {
        match self {
            ShardStore::Local(s) => s.save(shard, c).await,
            ShardStore::Lease { table, counter } => {
                match table.save(shard, *counter, &c.encode()).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(SaveError::Lost),
                    Err(e) => Err(SaveError::Failed(e.to_string())),
                }
            }
        }
    }
}
