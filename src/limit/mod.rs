//! Requests-per-minute and tokens-per-minute limits, exact across every
//! worker of the process.
//!
//! A [`Window`] is 64 one-second buckets, each an `AtomicU64` packing the
//! second it counts (high 32 bits) and its count (low 32). What a window
//! holds "now" is the sum of the buckets of the last 61 seconds (now and
//! the 60 before): anything admitted less than 60 s ago is always counted,
//! so the bound is never exceeded; the price is that an admission is
//! remembered for 60 to 61 s, never less.
//!
//! Admitting a request is increment, then sum, then undo if over: all
//! sequentially consistent. Of N + 1 admissions racing for the last place,
//! the one whose increment comes last in that order sees every other
//! increment in its sum and refuses itself, so at most N are ever admitted
//! in any 60 s span — with no lock, and across cores. (Two racers may both
//! see each other and both refuse; that costs a place, never adds one.)
//!
//! Tokens are only known when the answer ends: a request is admitted while
//! its window holds fewer tokens than the limit, and its usage is added
//! afterwards ([`Charge`]), so later requests are refused until the window
//! frees.
//!
//! Windows live in a [`Registry`] outside the snapshot, keyed by what they
//! count: a reload keeps every window whose key remains, counts included.
//!
//! In cluster mode the same windows also hold what the control thread
//! leased from the cluster's count in Redis ([`lease`]); see there.

pub mod lease;

use crate::config::raw::RateLimitsSpec;
use crate::config::Problems;
use crate::error::{Error, Kind};
use std::collections::HashMap;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use lease::{Counting, Lease, Mode};

const BUCKETS: usize = 64;
/// Buckets summed: the current second and the 60 before it.
const SPAN: u64 = 61;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Seconds since the process's limit epoch, starting at 1 (0 marks an
/// unused bucket).
pub fn now_s() -> u64 {
    epoch().elapsed().as_secs() + 1
}

/// Milliseconds on the same clock as [`now_s`] (leases expire on it).
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1000
}

fn pack(sec: u64, count: u64) -> u64 {
    (sec << 32) | count.min(u32::MAX as u64)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 32, v & u32::MAX as u64)
}

/// One reading of the limit clock.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub s: u64,
    pub ms: u64,
}

impl Now {
    pub fn read() -> Now {
        let ms = now_ms();
        Now { s: ms / 1000, ms }
    }
}

/// A sliding 60 s window of counts (requests or tokens).
pub struct Window {
    buckets: [AtomicU64; BUCKETS],
    /// Cluster mode: request permits leased from the cluster's count.
    pub lease: Lease,
    /// Cluster mode: requests that asked for a permit, admitted or not
    /// (the control thread sizes leases by it).
    pub demand: AtomicU64,
    /// Cluster mode: until when (ms) Redis last said the window is full.
    pub full_until_ms: AtomicU64,
    /// Cluster mode: tokens the other instances used in the window, as
    /// last read from Redis.
    pub others: AtomicU64,
    /// Tokens ever added here (the control thread sends Redis the rest).
    pub tokens_added: AtomicU64,
    /// Cluster mode: requests admitted by local counting (Redis not yet
    /// or no longer reachable), charged to Redis once it answers.
    pub local_admitted: AtomicU64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            lease: Lease::default(),
            demand: AtomicU64::new(0),
            full_until_ms: AtomicU64::new(0),
            others: AtomicU64::new(0),
            tokens_added: AtomicU64::new(0),
            local_admitted: AtomicU64::new(0),
        }
    }
}

impl Window {
    /// Adds `n` to second `now`'s bucket (saturating).
    pub fn add(&self, now: u64, n: u64) {
        let b = &self.buckets[now as usize % BUCKETS];
        let mut v = b.load(SeqCst);
        loop {
            let (sec, count) = unpack(v);
            let new = if sec == now {
                pack(now, count.saturating_add(n))
            } else if sec < now {
                pack(now, n)
            } else {
                // A racer read a later clock; count with it (conservative).
                pack(sec, count.saturating_add(n))
            };
            match b.compare_exchange_weak(v, new, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(cur) => v = cur,
            }
        }
    }

    /// Takes back `n` added at second `now`.
    fn sub(&self, now: u64, n: u64) {
        let b = &self.buckets[now as usize % BUCKETS];
        let mut v = b.load(SeqCst);
        loop {
            let (sec, count) = unpack(v);
            if sec != now {
                return;
            }
            match b.compare_exchange_weak(v, pack(sec, count.saturating_sub(n)), SeqCst, SeqCst) {
                Ok(_) => return,
                Err(cur) => v = cur,
            }
        }
    }

    /// The count of the last 61 seconds.
    pub fn sum(&self, now: u64) -> u64 {
        let oldest = now.saturating_sub(SPAN - 1);
        self.buckets
            .iter()
            .map(|b| unpack(b.load(SeqCst)))
            .filter(|&(sec, _)| sec >= oldest && sec <= now && sec > 0)
            .map(|(_, c)| c)
            .sum()
    }

    /// Admits one request if that keeps the window at most `limit`; else
    /// the seconds until a place frees.
    pub fn try_admit(&self, now: u64, limit: u64) -> Result<(), u64> {
        self.add(now, 1);
        if self.sum(now) <= limit {
            return Ok(());
        }
        self.sub(now, 1);
        Err(self.retry_after(now, limit))
    }

    /// Admits one request the way `counting` says: by lease in cluster
    /// mode, else locally (at a share of the limit while Redis is down).
    /// The local window counts it either way, ready for a fall-back.
    /// Answers the lease the permit came from (0: counted locally).
    fn admit_request(&self, counting: Counting, now: Now, limit: u64) -> Result<u64, u64> {
        match counting {
            Counting::Local => self.try_admit(now.s, limit).map(|()| 0),
            Counting::Share(_) => {
                self.try_admit(now.s, counting.local_limit(limit))?;
                // Owed to the cluster's count once Redis answers.
                self.local_admitted.fetch_add(1, Relaxed);
                Ok(0)
            }
            Counting::Leased => {
                self.demand.fetch_add(1, Relaxed);
                let Some(lease) = self.lease.take(now.ms) else {
                    return Err(self.cluster_retry(now.ms));
                };
                self.add(now.s, 1);
                Ok(lease)
            }
        }
    }

    /// Takes back a request [`Window::admit_request`] admitted.
    fn undo_request(&self, counting: Counting, now: Now, lease: u64) {
        self.sub(now.s, 1);
        match counting {
            Counting::Local => {}
            Counting::Share(_) => {
                let _ = self
                    .local_admitted
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
            }
            Counting::Leased => self.lease.give_back(lease),
        }
    }

    /// Whether a token window has room, and if not the seconds to wait.
    fn tokens_left(&self, counting: Counting, now: Now, limit: u64) -> Result<(), u64> {
        let mut used = self.sum(now.s);
        if counting == Counting::Leased {
            used = used.saturating_add(self.others.load(Relaxed));
            if used >= limit {
                return Err(self.cluster_retry(now.ms));
            }
        }
        let limit = counting.local_limit(limit);
        if used >= limit {
            return Err(self.retry_after(now.s, limit));
        }
        Ok(())
    }

    /// Seconds until Redis's count had room, as last told; 1 when it did
    /// (the lease only ran dry: the next one is due within a tick).
    fn cluster_retry(&self, now_ms: u64) -> u64 {
        let full = self.full_until_ms.load(Relaxed);
        full.saturating_sub(now_ms).div_ceil(1000).max(1)
    }

    /// Seconds until the window holds less than `below`, if nothing more
    /// is added: when enough of its oldest buckets have aged out.
    pub fn retry_after(&self, now: u64, below: u64) -> u64 {
        let oldest = now.saturating_sub(SPAN - 1);
        let mut live: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .map(|b| unpack(b.load(SeqCst)))
            .filter(|&(sec, c)| sec >= oldest && sec <= now && sec > 0 && c > 0)
            .collect();
        live.sort_unstable();
        let mut left: u64 = live.iter().map(|&(_, c)| c).sum();
        for (sec, c) in live {
            left -= c;
            if left < below {
                // Bucket `sec` stops counting at second sec + SPAN.
                return (sec + SPAN).saturating_sub(now).max(1);
            }
        }
        1
    }
}

/// Windows by key; the control thread builds a snapshot's windows here, so
/// a reload keeps the counts of every key that remains.
#[derive(Default)]
pub struct Registry {
    windows: Mutex<HashMap<String, Slot>>,
    /// Cluster mode's counting switch, shared by every table.
    mode: Option<Arc<Mode>>,
}

/// One window and what it limits.
#[derive(Clone)]
pub struct Slot {
    pub key: String,
    pub window: Arc<Window>,
    pub per_minute: u64,
    /// Counts tokens (else requests).
    pub tokens: bool,
}

impl Registry {
    /// A registry whose windows count across the cluster.
    pub fn clustered() -> Registry {
        Registry {
            mode: Some(Arc::default()),
            ..Registry::default()
        }
    }

    /// Cluster mode's counting switch (`None`: not clustered).
    pub fn mode(&self) -> Option<&Arc<Mode>> {
        self.mode.as_ref()
    }

    /// Points every window of `table` at the registry's window for its key
    /// (made if new), and forgets keys `table` no longer uses.
    pub fn adopt(&self, table: &mut Table) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::with_capacity(table.slots.len());
        for slot in &mut table.slots {
            if let Some(held) = map.remove(slot.key.as_str()) {
                slot.window = held.window;
            }
            kept.insert(slot.key.clone(), slot.clone());
        }
        *map = kept;
        table.mode = self.mode.clone();
    }

    /// Every window in use, with its limit as the newest snapshot says.
    pub fn slots(&self) -> Vec<Slot> {
        let map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

/// The windows a snapshot uses, by index.
#[derive(Default)]
pub struct Table {
    slots: Vec<Slot>,
    mode: Option<Arc<Mode>>,
}

impl Table {
    fn add(&mut self, key: String, per_minute: u64, tokens: bool) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            return i;
        }
        self.slots.push(Slot {
            key,
            window: Arc::default(),
            per_minute,
            tokens,
        });
        self.slots.len() - 1
    }

    pub fn get(&self, i: usize) -> &Arc<Window> {
        &self.slots[i].window
    }

    fn counting(&self) -> Counting {
        self.mode.as_ref().map_or(Counting::Local, |m| m.counting())
    }
}

/// One limit: at most `per_minute` in any 60 s, counted in window `window`.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub per_minute: u64,
    pub window: usize,
}

/// Request and token limits of one consumer, Model API, or pair.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub requests: Option<Limit>,
    pub tokens: Option<Limit>,
}

impl Limits {
    /// Validates `spec` (at field path `at`) and makes its windows under
    /// `key`.
    pub fn compile(
        at: &str,
        spec: &RateLimitsSpec,
        key: &str,
        table: &mut Table,
        p: &mut Problems,
    ) -> Limits {
        if !valid(at, spec, p) {
            return Limits::default();
        }
        Limits::windows(spec, key, table)
    }

    fn windows(spec: &RateLimitsSpec, key: &str, table: &mut Table) -> Limits {
        let mut one = |field: &str, value: Option<u64>| {
            let per_minute = value?;
            let tokens = field.starts_with("tokens");
            Some(Limit {
                per_minute,
                window: table.add(format!("{key}:{field}"), per_minute, tokens),
            })
        };
        Limits {
            requests: one("requests_per_minute", spec.requests_per_minute),
            tokens: one("tokens_per_minute", spec.tokens_per_minute),
        }
    }

    fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }
}

fn valid(at: &str, spec: &RateLimitsSpec, p: &mut Problems) -> bool {
    let mut ok = true;
    for (field, value) in [
        ("requests_per_minute", spec.requests_per_minute),
        ("tokens_per_minute", spec.tokens_per_minute),
    ] {
        if value == Some(0) {
            p.error(
                format!("{at}.{field}"),
                "must be at least 1 (leave it out for no limit)",
            );
            ok = false;
        }
    }
    ok
}

/// A Model API's own limits: for the whole API, or per consumer (auth on).
#[derive(Clone, Debug, Default)]
pub enum ApiLimits {
    #[default]
    None,
    Whole(Limits),
    /// By consumer index; consumers the API does not admit have none.
    PerConsumer(Vec<Limits>),
}

impl ApiLimits {
    /// For the whole API, or (`per_consumer`: the name of each consumer by
    /// index, for those the API admits) per admitted consumer.
    pub fn compile(
        at: &str,
        spec: &RateLimitsSpec,
        api: &str,
        per_consumer: Option<&[Option<&str>]>,
        table: &mut Table,
        p: &mut Problems,
    ) -> ApiLimits {
        if spec.requests_per_minute.is_none() && spec.tokens_per_minute.is_none() {
            return ApiLimits::None;
        }
        if !valid(at, spec, p) {
            return ApiLimits::None;
        }
        match per_consumer {
            None => ApiLimits::Whole(Limits::windows(spec, &format!("api:{api}"), table)),
            Some(admitted) => ApiLimits::PerConsumer(
                admitted
                    .iter()
                    .map(|name| match name {
                        Some(name) => {
                            Limits::windows(spec, &format!("api:{api}:consumer:{name}"), table)
                        }
                        None => Limits::default(),
                    })
                    .collect(),
            ),
        }
    }

    fn for_consumer(&self, consumer: Option<usize>) -> Option<&Limits> {
        match (self, consumer) {
            (ApiLimits::Whole(l), _) => Some(l),
            (ApiLimits::PerConsumer(per), Some(c)) => per.get(c).filter(|l| !l.is_empty()),
            _ => None,
        }
    }
}

/// What an admitted request owes when its answer ends: its tokens, added
/// to each token window that limits it.
#[derive(Default)]
pub struct Charge {
    windows: [Option<Arc<Window>>; 2],
}

impl Charge {
    /// Whether any token limit waits for this request's usage.
    pub fn wants_tokens(&self) -> bool {
        self.windows.iter().any(Option::is_some)
    }

    pub fn tokens(&self, n: u64) {
        if n == 0 {
            return;
        }
        let now = now_s();
        for w in self.windows.iter().flatten() {
            w.add(now, n);
            w.tokens_added.fetch_add(n, Relaxed);
        }
    }
}

/// Admits a request of `consumer` to a Model API against the consumer's
/// limits and the API's, or refuses it with 429 and the seconds to wait.
pub fn admit(
    table: &Table,
    consumer: Option<(&str, &Limits)>,
    api: (&str, &ApiLimits),
    consumer_index: Option<usize>,
) -> Result<Charge, Error> {
    let api_limits = api.1.for_consumer(consumer_index);
    // (who, limits): who is only spelled out in a refusal.
    let sets = [
        consumer.map(|(name, l)| (("consumer", name), l)),
        api_limits.map(|l| (("Model API", api.0), l)),
    ];
    if sets.iter().all(Option::is_none) {
        return Ok(Charge::default());
    }
    let (now, counting) = (Now::read(), table.counting());
    let refuse = |(kind, name): &(&str, &str), what: &str, limit: u64, retry: u64| {
        let mut e = Error::new(
            Kind::RateLimited,
            format!(
                "rate limit of {kind} {name} exceeded: {limit} {what} per minute; retry in {retry} s"
            ),
        );
        e.retry_after = Some(retry);
        e
    };
    // Tokens first: checking them changes nothing.
    for (who, l) in sets.iter().flatten() {
        if let Some(t) = l.tokens {
            let w = table.get(t.window);
            if let Err(retry) = w.tokens_left(counting, now, t.per_minute) {
                return Err(refuse(who, "tokens", t.per_minute, retry));
            }
        }
    }
    let mut taken: [Option<(&Window, u64)>; 2] = [None, None];
    for (slot, (who, l)) in sets
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.as_ref()?)))
    {
        if let Some(r) = l.requests {
            let w = table.get(r.window);
            match w.admit_request(counting, now, r.per_minute) {
                Ok(lease) => taken[slot] = Some((w, lease)),
                Err(retry) => {
                    for (t, lease) in taken.iter().flatten() {
                        t.undo_request(counting, now, *lease);
                    }
                    return Err(refuse(who, "requests", r.per_minute, retry));
                }
            }
        }
    }
    let mut charge = Charge::default();
    for (slot, set) in sets.iter().enumerate() {
        if let Some(t) = set.as_ref().and_then(|(_, l)| l.tokens) {
            charge.windows[slot] = Some(table.get(t.window).clone());
        }
    }
    Ok(charge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_exactly_the_limit_and_frees_after_61_seconds() {
        let w = Window::default();
        for _ in 0..5 {
            assert_eq!(w.try_admit(100, 5), Ok(()));
        }
        assert_eq!(w.try_admit(100, 5), Err(61));
        assert_eq!(w.sum(100), 5);
        // Still counted 60 s later (conservative), gone at 61.
        assert_eq!(w.try_admit(160, 5), Err(1));
        assert_eq!(w.try_admit(161, 5), Ok(()));
        assert_eq!(w.sum(161), 1);
    }

    #[test]
    fn retry_after_waits_for_enough_old_buckets() {
        let w = Window::default();
        w.add(10, 3);
        w.add(20, 3);
        w.add(30, 3);
        // 9 held; to drop below 5 the buckets of 10 and 20 must go (at 81).
        assert_eq!(w.retry_after(40, 5), 41);
        assert_eq!(w.retry_after(40, 7), 31);
        // A bucket 64 seconds on reuses the slot of second 10.
        w.add(74, 1);
        assert_eq!(w.sum(74), 7);
    }

    #[test]
    fn concurrent_admissions_never_pass_the_limit() {
        for round in 0..20u64 {
            let w = Arc::new(Window::default());
            let admitted = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (w, admitted) = (w.clone(), admitted.clone());
                    std::thread::spawn(move || {
                        for _ in 0..200 {
                            if w.try_admit(1000 + round, 50).is_ok() {
                                admitted.fetch_add(1, SeqCst);
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let n = admitted.load(SeqCst);
            assert!((49..=50).contains(&n), "round {round}: {n} admitted");
            assert_eq!(w.sum(1000 + round), n);
        }
    }

    #[test]
    fn registry_keeps_counts_across_tables() {
        let reg = Registry::default();
        let mut t1 = Table::default();
        let i = t1.add("consumer:a:requests_per_minute".into(), 10, false);
        t1.add("api:x:requests_per_minute".into(), 10, false);
        reg.adopt(&mut t1);
        t1.get(i).add(now_s(), 7);
        let mut t2 = Table::default();
        let j = t2.add("consumer:a:requests_per_minute".into(), 10, false);
        reg.adopt(&mut t2);
        assert_eq!(t2.get(j).sum(now_s()), 7);
        assert!(Arc::ptr_eq(t1.get(i), t2.get(j)));
        assert_eq!(reg.windows.lock().unwrap().len(), 1);
    }

    fn api_with_limit(reg: &Registry, per_minute: u64) -> (Table, ApiLimits) {
        let mut table = Table::default();
        let spec = RateLimitsSpec {
            requests_per_minute: Some(per_minute),
            ..RateLimitsSpec::default()
        };
        let mut p = Problems::default();
        let api = ApiLimits::compile("a", &spec, "chat", None, &mut table, &mut p);
        reg.adopt(&mut table);
        (table, api)
    }

    #[test]
    fn clustered_windows_admit_by_lease_and_share_the_limit_when_redis_is_down() {
        let reg = Registry::clustered();
        let (table, api) = api_with_limit(&reg, 10);
        let admit_n = |n: usize| {
            (0..n)
                .filter(|_| admit(&table, None, ("chat", &api), None).is_ok())
                .count()
        };
        // Not yet leased, one live instance: the whole limit, locally, and
        // owed to the cluster's count.
        assert_eq!(admit_n(3), 3);
        let slot = reg.slots().pop().unwrap();
        assert_eq!(slot.window.local_admitted.load(SeqCst), 3);
        // Leased: exactly the permits held, whatever the local count says.
        reg.mode().unwrap().set_leased(2);
        slot.window.lease.replace(now_ms() + 60_000, 4);
        assert_eq!(admit_n(6), 4);
        assert_eq!(slot.window.demand.load(SeqCst), 6);
        slot.window.full_until_ms.store(now_ms() + 5_500, SeqCst);
        let Err(e) = admit(&table, None, ("chat", &api), None) else {
            panic!("admitted past the lease")
        };
        assert_eq!(e.retry_after, Some(6), "Redis's retry, rounded up");
        // Redis down, two live: 10 / 2 = 5, of which 7 are already used
        // here (3 local + 4 leased).
        reg.mode().unwrap().set_shared(2);
        assert_eq!(admit_n(1), 0);
        assert_eq!(slot.window.sum(now_s()), 7);
    }
}
