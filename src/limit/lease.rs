//! Cluster mode's side of a window on the hot path (PRODUCT.md §11).
//!
//! Workers never talk to Redis. The control thread leases request permits
//! from the cluster's window in Redis in small batches ([`Lease`]), ahead
//! of demand, and workers take them with one compare-and-swap. A permit
//! is charged in Redis to the second after the one it was leased in and
//! is only valid until that second ends, so it is used no later than the
//! second it is counted for: the cluster's count covers every admission
//! for the whole 60 s after it, exactly as the local window does (used
//! early is counted longer — never shorter).
//!
//! When Redis is unreachable (or not yet heard from, at start), [`Mode`]
//! says so and every window counts locally, at its limit divided by the
//! live instances last counted; what it admits so is charged to the
//! cluster's count as soon as Redis answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

/// Permits leased to this instance: valid-until (40 bits of ms on the
/// limit clock) and count (24 bits), in one word so a worker's take and
/// the control thread's swap never tear.
#[derive(Default)]
pub struct Lease(AtomicU64);

/// Most permits one lease holds.
pub const MAX_PERMITS: u64 = (1 << 24) - 1;

fn pack(until_ms: u64, permits: u64) -> u64 {
    (until_ms << 24) | permits.min(MAX_PERMITS)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 24, v & MAX_PERMITS)
}

impl Lease {
    /// Takes one permit if one is left and still valid at `now_ms`; the
    /// lease it came from (its valid-until), for [`Lease::give_back`].
    pub fn take(&self, now_ms: u64) -> Option<u64> {
        let mut v = self.0.load(SeqCst);
        loop {
            let (until, n) = unpack(v);
            if n == 0 || now_ms >= until {
                return None;
            }
            match self.0.compare_exchange_weak(v, v - 1, SeqCst, SeqCst) {
                Ok(_) => return Some(until),
                Err(cur) => v = cur,
            }
        }
    }

    /// Gives back a permit taken from the lease valid until `from` (the
    /// request was refused by another limit), unless that lease has been
    /// replaced since: a permit of an old lease is not this one's to hold.
    pub fn give_back(&self, from: u64) {
        let mut v = self.0.load(SeqCst);
        loop {
            let (until, n) = unpack(v);
            if until != from || n == MAX_PERMITS {
                return;
            }
            match self.0.compare_exchange_weak(v, v + 1, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(cur) => v = cur,
            }
        }
    }

    /// Permits left and their valid-until.
    pub fn peek(&self) -> (u64, u64) {
        unpack(self.0.load(SeqCst))
    }

    /// Adds `n` permits to the lease if it is still the one valid until
    /// `until_ms`; false when it has been replaced or has expired.
    pub fn top_up(&self, until_ms: u64, n: u64) -> bool {
        let mut v = self.0.load(SeqCst);
        loop {
            let (until, left) = unpack(v);
            if until != until_ms {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(v, pack(until, left + n), SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(cur) => v = cur,
            }
        }
    }

    /// Replaces the lease; returns the permits the old one had left.
    pub fn replace(&self, until_ms: u64, n: u64) -> u64 {
        unpack(self.0.swap(pack(until_ms, n), SeqCst)).1
    }
}

/// How the windows of a clustered process count right now.
pub struct Mode {
    /// Redis reachable and leases current: admit by lease.
    leased: AtomicBool,
    /// Live instances as last counted (at least 1): the share of a limit
    /// each instance counts locally while Redis is unreachable.
    share: AtomicU64,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            leased: AtomicBool::new(false),
            share: AtomicU64::new(1),
        }
    }
}

/// What [`Mode`] says for one admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// Only this process counts (no cluster).
    Local,
    /// Leased permits; token windows add the other instances' usage.
    Leased,
    /// Redis unreachable: local counting at the limit ÷ this many.
    Share(u64),
}

impl Counting {
    /// The limit a local window applies.
    pub fn local_limit(self, per_minute: u64) -> u64 {
        match self {
            Counting::Share(n) => (per_minute / n.max(1)).max(1),
            _ => per_minute,
        }
    }
}

impl Mode {
    pub fn counting(&self) -> Counting {
        if self.leased.load(SeqCst) {
            Counting::Leased
        } else {
            Counting::Share(self.share.load(SeqCst).max(1))
        }
    }

    /// Redis answered and every lease is current.
    pub fn set_leased(&self, live: usize) {
        self.share.store(live.max(1) as u64, SeqCst);
        self.leased.store(true, SeqCst);
    }

    /// Redis unreachable: count locally, sharing each limit among `live`.
    pub fn set_shared(&self, live: usize) {
        self.share.store(live.max(1) as u64, SeqCst);
        self.leased.store(false, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_taken_until_spent_or_expired() {
        let l = Lease::default();
        assert_eq!(l.take(0), None, "an empty lease admits nothing");
        assert_eq!(l.replace(1000, 2), 0);
        assert_eq!(l.take(999), Some(1000));
        assert_eq!(l.take(999), Some(1000));
        assert_eq!(l.take(999), None);
        l.give_back(1000);
        assert_eq!(l.take(1000), None, "expired at its valid-until");
        assert_eq!(l.peek(), (1000, 1));
        assert!(l.top_up(1000, 5));
        assert!(!l.top_up(2000, 5), "only the lease it was asked for");
        assert_eq!(l.replace(2000, 3), 6);
        l.give_back(1000);
        assert_eq!(l.peek(), (2000, 3), "no give-back into a newer lease");
    }

    #[test]
    fn concurrent_takes_never_pass_the_permits() {
        let l = std::sync::Arc::new(Lease::default());
        l.replace(u32::MAX as u64, 1000);
        let taken: u64 = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..400).filter(|_| l.take(1).is_some()).count() as u64)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 1000);
    }

    #[test]
    fn redis_down_shares_the_limit_among_live_instances() {
        let m = Mode::default();
        assert_eq!(m.counting(), Counting::Share(1));
        m.set_leased(3);
        assert_eq!(m.counting(), Counting::Leased);
        m.set_shared(3);
        assert_eq!(m.counting(), Counting::Share(3));
        assert_eq!(m.counting().local_limit(40), 13);
        assert_eq!(m.counting().local_limit(2), 1, "never below one");
        assert_eq!(Counting::Local.local_limit(40), 40);
    }
}
