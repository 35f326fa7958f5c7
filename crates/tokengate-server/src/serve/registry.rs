//! The open connections, so that at the cap the ones idle longest (or stuck
//! longest in a slow request body) can be closed to make room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::connection::ConnState;

/// Connections asked to close per scan at the cap: one scan walks every
/// connection, so a flood of new clients pays it once per batch, not once
/// per client.
pub(crate) const EVICTION_BATCH: usize = 16;

/// Every open connection, by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    connections: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    pub(crate) fn insert(&self, state: Arc<ConnState>) {
        self.lock().insert(state.id, state);
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks up to `count` idle connections (or connections waiting for a
    /// request body) to close, those idle longest first; returns how many
    /// were asked.
    pub(crate) fn close_oldest_idle(&self, count: usize) -> usize {
        let connections = self.lock();
        let mut idle: Vec<(u64, &Arc<ConnState>)> = connections
            .values()
            .filter_map(|state| state.eviction_key().map(|since| (since, state)))
            .collect();
        let count = count.min(idle.len());
        if count == 0 {
            return 0;
        }
        if count < idle.len() {
            idle.select_nth_unstable_by_key(count - 1, |(since, _)| *since);
        }
        idle[..count]
            .iter()
            .filter(|(_, state)| state.request_close())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a connection from the registry when its task ends, aborted or not.
pub(crate) struct Registered {
    pub(crate) shared: Arc<super::Shared>,
    pub(crate) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
    }
}
