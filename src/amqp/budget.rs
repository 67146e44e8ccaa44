//! The byte budget of in-flight deliveries: what bounds the gateway's memory when messages are
//! large (issue 11 item 4; DESIGN §1 "bounded in bytes as well as in messages").
//!
//! Input: the body size of each delivery the pipeline is about to take. Output: a
//! [`BudgetPermit`] that holds those bytes until it is dropped — it lives inside the
//! [`super::Delivery`], so settling or dropping the delivery gives the bytes back and the pipeline
//! needs no code of its own for it. Failure: none; taking waits instead.
//!
//! Two parts bound memory together, because the broker pushes up to `prefetch` deliveries unasked
//! and lapin buffers them without limit (its consumer queue is an unbounded channel and its I/O
//! loop never stops reading the socket):
//! 1. the permit: [`super::Deliveries::next`] yields a delivery only when its bytes fit next to
//!    what the pipeline already holds, so the pipeline never holds more than the budget — except a
//!    single message larger than the whole budget, which waits until nothing else is held and then
//!    passes alone (it is charged the whole budget);
//! 2. the window ([`PrefetchWindow`]): the consumer's count prefetch is chosen so that
//!    `window × expected size ≤ budget`, starting from the largest message the configuration allows
//!    and following the sizes actually seen (shrinking at once, growing with hysteresis); RabbitMQ
//!    applies `basic.qos` per consumer, so a new window means a new consumer on the same channel.
//!
//! Worst-case overshoot: the pipeline holds at most `budget` bytes (or one oversized message); on
//! top of that, lapin holds the deliveries the broker sent within the current window that the
//! pipeline has not taken yet: at most `window − 1` of them. With the window fitted to the sizes
//! seen that is about one budget more; after a sudden jump from small to large messages it is at
//! most `window × max_message_bytes`, for as long as it takes to see one large delivery and
//! restart the consumer (the deliveries already sent cannot be called back).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Shared count of the bytes the pipeline holds, with a limit.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    state: Mutex<Held>,
    released: Notify,
}

/// What the pipeline holds right now, and the most it ever held (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Bytes charged to permits alive now.
    pub bytes: u64,
    /// Permits alive now (unsettled deliveries the pipeline took).
    pub permits: usize,
    /// The largest `bytes` ever reached.
    pub peak_bytes: u64,
    /// The largest `permits` ever reached.
    pub peak_permits: usize,
}

impl ByteBudget {
    /// A budget of `limit` bytes (at least 1).
    pub fn new(limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                state: Mutex::new(Held::default()),
                released: Notify::new(),
            }),
        }
    }

    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// A snapshot of what is held.
    pub fn held(&self) -> Held {
        *self.lock()
    }

    /// What a delivery of `size` bytes is charged: its size, or the whole budget when it is larger
    /// (so it waits until nothing else is held and then passes alone).
    pub fn charge(&self, size: u64) -> u64 {
        size.min(self.inner.limit)
    }

    /// Take `size` bytes, waiting until they fit.
    pub async fn acquire(&self, size: u64) -> BudgetPermit {
        let bytes = self.charge(size);
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between check and await is not missed.
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire_charged(bytes) {
                return permit;
            }
            released.await;
        }
    }

    /// Take `size` bytes if they fit now.
    pub fn try_acquire(&self, size: u64) -> Option<BudgetPermit> {
        self.try_acquire_charged(self.charge(size))
    }

    fn try_acquire_charged(&self, bytes: u64) -> Option<BudgetPermit> {
        let mut held = self.lock();
        if held.bytes + bytes > self.inner.limit {
            return None;
        }
        held.bytes += bytes;
        held.permits += 1;
        held.peak_bytes = held.peak_bytes.max(held.bytes);
        held.peak_permits = held.peak_permits.max(held.permits);
        Some(BudgetPermit {
            inner: self.inner.clone(),
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes held for one delivery; given back when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    inner: Arc<Inner>,
    bytes: u64,
}

impl BudgetPermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        {
            let mut held = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            held.bytes -= self.bytes;
            held.permits -= 1;
        }
        self.inner.released.notify_waiters();
    }
}

/// The fixed count window of each intake partition's consumer (`Consumer::open_partitioned`):
/// its equal share of the byte budget over the largest message allowed, so that every partition
/// full of messages of `max_message_bytes` still stays within `budget` (1 ..= `prefetch`).
pub fn partition_window(budget: u64, queues: usize, prefetch: u16, max_message_bytes: u64) -> u16 {
    let share = budget / (queues.max(1) as u64);
    PrefetchWindow::new(share, prefetch, max_message_bytes).current()
}

/// Sizes are remembered per block of this many deliveries; growth looks at the last one or two
/// blocks, so after a large message the window stays small for 32 to 64 deliveries.
const BLOCK: u32 = 32;

/// The consumer's count prefetch, fitted to the budget and the sizes seen.
#[derive(Debug, Clone)]
pub struct PrefetchWindow {
    budget: u64,
    /// The configured prefetch: the window never exceeds it.
    ceiling: u16,
    /// The window of the current consumer.
    current: u16,
    /// Largest body seen in the current and the previous block of deliveries.
    block_max: u64,
    previous_block_max: u64,
    /// Deliveries seen in the current block (of [`BLOCK`] deliveries).
    in_block: u32,
    /// Deliveries seen since the window last changed.
    since_change: u32,
}

impl PrefetchWindow {
    /// Starts from the largest message the configuration lets in (`largest`), so a queue full of
    /// maximum-size messages cannot overrun the budget before the first delivery is seen.
    pub fn new(budget: u64, ceiling: u16, largest: u64) -> Self {
        let ceiling = ceiling.max(1);
        let mut w = Self {
            budget: budget.max(1),
            ceiling,
            current: ceiling,
            block_max: 0,
            previous_block_max: 0,
            in_block: 0,
            since_change: 0,
        };
        w.current = w.fit(largest);
        w
    }

    /// The window of the current consumer.
    pub fn current(&self) -> u16 {
        self.current
    }

    /// How many deliveries of `size` bytes fit in the budget (1 ..= ceiling).
    pub fn fit(&self, size: u64) -> u16 {
        let n = self.budget / size.max(1);
        u16::try_from(n).unwrap_or(u16::MAX).clamp(1, self.ceiling)
    }

    /// Records a delivery of `size` bytes; returns the new window when the consumer should be
    /// restarted with it. Shrinks at once when `current × size` exceeds the budget; grows only
    /// when the sizes of the last one or two blocks allow at least twice the current window, and
    /// not before a whole window of deliveries has been seen since the last change.
    pub fn observe(&mut self, size: u64) -> Option<u16> {
        self.block_max = self.block_max.max(size);
        self.in_block += 1;
        self.since_change = self.since_change.saturating_add(1);
        if self.in_block >= BLOCK {
            self.previous_block_max = self.block_max;
            self.block_max = 0;
            self.in_block = 0;
        }
        let fits_now = self.fit(size);
        if fits_now < self.current {
            return Some(self.change(fits_now));
        }
        let recent = self.block_max.max(self.previous_block_max);
        let target = self.fit(recent);
        if target >= self.current.saturating_mul(2).min(self.ceiling)
            && target > self.current
            && self.since_change >= u32::from(self.current)
        {
            return Some(self.change(target));
        }
        None
    }

    fn change(&mut self, to: u16) -> u16 {
        self.current = to;
        self.since_change = 0;
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_bound_the_bytes_and_give_them_back() {
        let b = ByteBudget::new(100);
        let p1 = b.acquire(60).await;
        assert!(b.try_acquire(41).is_none(), "60 + 41 > 100");
        let p2 = b.acquire(40).await;
        assert_eq!(b.held().bytes, 100);
        drop(p1);
        assert_eq!(b.held().bytes, 40);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.acquire(70).await.bytes() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "70 does not fit next to 40");
        drop(p2);
        assert_eq!(waiter.await.unwrap(), 70);
        let h = b.held();
        assert_eq!(
            (h.bytes, h.permits, h.peak_bytes, h.peak_permits),
            (0, 0, 100, 2)
        );
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_passes_alone() {
        let b = ByteBudget::new(100);
        let small = b.acquire(1).await;
        assert!(
            b.try_acquire(500).is_none(),
            "waits until nothing else is held"
        );
        drop(small);
        let big = b.acquire(500).await;
        assert_eq!(big.bytes(), 100, "charged the whole budget");
        assert!(b.try_acquire(1).is_none(), "nothing passes next to it");
        drop(big);
        assert!(b.try_acquire(1).is_some());
    }

    #[test]
    fn window_starts_from_the_largest_message_and_follows_the_sizes() {
        const MIB: u64 = 1 << 20;
        let mut w = PrefetchWindow::new(64 * MIB, 256, 35 * MIB);
        assert_eq!(w.current(), 1, "64 MiB holds one 35 MiB message");
        // Small messages: grows to the ceiling after one delivery (a whole window of 1).
        assert_eq!(w.observe(6_000), Some(256));
        for _ in 0..1000 {
            assert_eq!(w.observe(6_000), None, "steady sizes keep the window");
        }
        // A 1 MiB message: 256 × 1 MiB > 64 MiB, shrink at once to 64.
        assert_eq!(w.observe(MIB), Some(64));
        assert_eq!(w.observe(MIB), None);
        // A 35 MiB one: down to 1.
        assert_eq!(w.observe(35 * MIB), Some(1));
        // Small again: the large one is still in the recent blocks, so no growth yet.
        assert_eq!(w.observe(6_000), None);
        let grown = (0..70).find_map(|_| w.observe(6_000));
        assert_eq!(
            grown,
            Some(256),
            "after the large message left the recent blocks"
        );
        assert!(PrefetchWindow::new(64 * MIB, 256, 1000).current() == 256);
        assert_eq!(PrefetchWindow::new(10, 256, 35 * MIB).current(), 1);
        // Seven partitions sharing 7 x 4 x 35 MiB take four of the largest messages each; a
        // budget that is not a multiple rounds down, and never below one.
        assert_eq!(partition_window(7 * 4 * 35 * MIB, 7, 256, 35 * MIB), 4);
        assert_eq!(partition_window(7 * 4 * 35 * MIB - 1, 7, 256, 35 * MIB), 3);
        assert_eq!(partition_window(MIB, 7, 256, 35 * MIB), 1);
        assert_eq!(partition_window(u64::MAX, 7, 256, 35 * MIB), 256);
    }
}
