//! The in-memory sending queue: bounded in requests, items or bytes, one consumer
//! (the dispatcher), any number of producers.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Deserialize;
use sluice_pdata::Batch;
use tokio::sync::Notify;

/// What `queue_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Batches (export requests) — the default.
    #[default]
    Requests,
    /// Items: spans, metric points, log records.
    Items,
    /// Bytes of the batches' protobuf encoding: bounds the memory the queue
    /// holds whatever the batch sizes.
    Bytes,
}

impl Sizer {
    pub fn size(self, batch: &Batch) -> usize {
        match self {
            Sizer::Requests => 1,
            Sizer::Items => batch.items(),
            Sizer::Bytes => batch.encoded_len(),
        }
    }
}

struct State {
    /// Each batch with its size, computed once at push.
    batches: VecDeque<(Batch, usize)>,
    size: usize,
    closed: bool,
}

pub(crate) struct MemoryQueue {
    state: Mutex<State>,
    capacity: usize,
    sizer: Sizer,
    ready: Notify,
    space: Notify,
}

impl MemoryQueue {
    pub(crate) fn new(capacity: usize, sizer: Sizer) -> MemoryQueue {
        MemoryQueue {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                size: 0,
                closed: false,
            }),
            capacity,
            sizer,
            ready: Notify::new(),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the batch if it fits. A batch larger than the whole capacity is
    /// taken when the queue is empty, so that it is not refused for ever.
    pub(crate) fn try_push(&self, batch: Batch) -> Result<(), Batch> {
        let size = self.sizer.size(&batch);
        let mut st = self.lock();
        if st.closed || (st.size + size > self.capacity && !st.batches.is_empty()) {
            return Err(batch);
        }
        st.size += size;
        st.batches.push_back((batch, size));
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for room, then adds the batch; gives it back if the queue closed.
    pub(crate) async fn push_wait(&self, mut batch: Batch) -> Result<(), Batch> {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.try_push(batch) {
                Ok(()) => return Ok(()),
                Err(b) if self.lock().closed => return Err(b),
                Err(b) => batch = b,
            }
            space.await;
        }
    }

    /// The oldest batch; waits for one; `None` once closed and empty.
    pub(crate) async fn pop(&self) -> Option<Batch> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some((b, size)) = st.batches.pop_front() {
                    st.size -= size;
                    drop(st);
                    self.space.notify_waiters();
                    return Some(b);
                }
                if st.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.space.notify_waiters();
    }

    /// Current size in the sizer's unit.
    pub(crate) fn size(&self) -> usize {
        self.lock().size
    }

    /// Batches still queued and the items in them.
    pub(crate) fn remaining(&self) -> (usize, usize) {
        let st = self.lock();
        (
            st.batches.len(),
            st.batches.iter().map(|(b, _)| b.items()).sum(),
        )
    }
}
