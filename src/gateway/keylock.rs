//! One lock per (sender, MsgId): two deliveries that concern the same message — a duplicate racing
//! its original, or a receiver's AppRec racing the commit of the message it answers — are handled
//! one after the other. (Deliveries of one sender are already in order by their lane, `lanes.rs`;
//! this covers deliveries from different senders that touch the same record.)
//!
//! Input: a key. Output: a guard that may move into another task (the commit of a message finishes
//! after its lane has moved on). Bounded: an entry lives only while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::{HerId, MsgId};

type Key = (HerId, MsgId);
type Lock = Arc<tokio::sync::Mutex<()>>;

/// The locks; cheap to clone (shared map).
#[derive(Clone, Default)]
pub struct KeyLocks {
    map: Arc<Mutex<HashMap<Key, Lock>>>,
}

/// Held while a message's record is read, decided on and committed.
pub struct KeyGuard {
    map: Arc<Mutex<HashMap<Key, Lock>>>,
    key: Key,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, sender: HerId, msg_id: &MsgId) -> KeyGuard {
        let key = (sender, msg_id.clone());
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        KeyGuard {
            map: Arc::clone(&self.map),
            key,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_same_key_waits_another_does_not_and_entries_go() {
        let locks = KeyLocks::default();
        let g = locks.lock(HerId(1), &MsgId::new("a")).await;
        let other = locks.lock(HerId(1), &MsgId::new("b")).await; // a different key is free
        drop(other);
        let l2 = locks.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(HerId(1), &MsgId::new("a")).await;
            let _ = tx.send(());
        });
        // The waiter cannot have the lock while `g` is held, however long we look.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "second holder must wait");
        drop(g);
        waiter.await.unwrap();
        assert!(locks.is_empty());
    }
}
