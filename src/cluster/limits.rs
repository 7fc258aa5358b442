//! Limits across the cluster (PRODUCT.md §11), kept by the control thread.
//!
//! Each limit's count across the cluster is one Redis hash, a field per
//! second. Every [`TICK`] one script call (per batch of windows) does, for
//! each window that needs it:
//! - requests: gives back the unused permits of the lease it replaces,
//!   sums the last 61 seconds, and grants up to the permits asked for, if
//!   the sum leaves room, charged to the next second (see `limit::lease`
//!   for why that bound holds across instances);
//! - tokens: adds the tokens used here since the last call and reads the
//!   cluster's sum, so admission can count the other instances' usage.
//!
//! Leases follow demand: a standing few (half a second of this instance's
//! fair share), or what the last tick's request rate asks for over
//! [`LEAD`], at most the limit divided by the live instances. A lease ends
//! with its second; unused permits go back to Redis on the next call.
//! Redis unreachable: windows count locally at a share of each limit
//! until a call succeeds again.

use super::Link;
use crate::limit::lease::MAX_PERMITS;
use crate::limit::{self, Slot};
use crate::shared::Shared;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often leases are topped up and renewed.
pub const TICK: Duration = Duration::from_millis(50);
/// A lease covers this much of the last tick's request rate.
const LEAD: f64 = 0.25;
/// A Redis slower than this is treated as down for the tick: leases must
/// not run dry waiting for it.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Windows per script call.
const BATCH: usize = 256;
/// Token sums are re-read at least this often (ms), used or not.
const TOKENS_REFRESH_MS: u64 = 500;

/// Per window, per call: kind (0 requests, 1 tokens), limit, permits
/// wanted or tokens to add, a replaced lease's second and unused permits,
/// and requests admitted by local counting meanwhile (charged now).
/// Answers the Redis time, then grant, sum and retry-after (s,
/// 0 when there is room) per window.
const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1])
local out = {now, tonumber(t[2])}
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 6
  local kind, limit, n = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local back_s, back_n, owed = ARGV[a + 4], tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  if owed > 0 then redis.call('HINCRBY', key, now, owed) end
  if back_n > 0 and redis.call('HEXISTS', key, back_s) == 1 then
    if redis.call('HINCRBY', key, back_s, -back_n) <= 0 then redis.call('HDEL', key, back_s) end
  end
  local flat = redis.call('HGETALL', key)
  local sum, live = 0, {}
  for j = 1, #flat, 2 do
    local s, c = tonumber(flat[j]), tonumber(flat[j + 1])
    if s < now - 60 then redis.call('HDEL', key, flat[j])
    else sum = sum + c; live[#live + 1] = {s, c} end
  end
  local grant = 0
  if kind == '0' then
    grant = math.max(0, math.min(n, limit - sum))
    if grant > 0 then redis.call('HINCRBY', key, now + 1, grant) end
  elseif n > 0 then
    redis.call('HINCRBY', key, now, n)
  end
  local total = sum + grant
  if kind == '1' then total = sum + n end
  local retry = 0
  if total >= limit then
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local left = total
    retry = 61
    for _, b in ipairs(live) do
      left = left - b[2]
      if left < limit then retry = math.max(1, b[1] + 61 - now); break end
    end
  end
  redis.call('PEXPIRE', key, 63000)
  out[#out + 1] = grant
  out[#out + 1] = total
  out[#out + 1] = retry
end
return out
";

/// What this instance holds of one window's cluster count.
#[derive(Default)]
struct Held {
    /// Redis second the current lease is charged to (0: none yet).
    second: u64,
    /// The current lease's valid-until (limit clock, ms).
    until: u64,
    /// A replaced lease's second and unused permits, to give back.
    give_back: (u64, u64),
    demand_seen: u64,
    /// Locally admitted requests already charged to Redis.
    owed_sent: u64,
    tokens_sent: u64,
    refreshed_ms: u64,
}

/// One window's part of a call.
struct Ask {
    slot: Slot,
    /// Permits wanted (requests) or tokens to add (tokens).
    n: u64,
    /// A replaced lease's second and unused permits.
    back: (u64, u64),
    /// Requests admitted by local counting, not yet charged.
    owed: u64,
}

impl Ask {
    /// The script's arguments for this window, in its order.
    fn args(&self) -> [u64; 6] {
        let kind = u64::from(self.slot.tokens);
        let (back_s, back_n) = self.back;
        [
            kind,
            self.slot.per_minute,
            self.n,
            back_s,
            back_n,
            self.owed,
        ]
    }
}

/// Runs the script for one batch of windows: the Redis time (s, µs),
/// then grant, sum and retry per window.
async fn call(link: &Link, script: &redis::Script, batch: &[Ask]) -> Result<Vec<i64>, String> {
    let keys: Vec<String> = batch
        .iter()
        .map(|a| format!("limit:{}", a.slot.key))
        .collect();
    let args: Vec<u64> = batch.iter().flat_map(Ask::args).collect();
    match tokio::time::timeout(CALL_TIMEOUT, link.eval(script, &keys, &args)).await {
        Ok(Ok(out)) if out.len() == 2 + 3 * batch.len() => Ok(out),
        Ok(Ok(_)) => Err("an answer of the wrong shape".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// Runs until the process starts draining, then gives its leases back
/// (so the other instances need not wait a minute for them) and counts
/// locally for the rest of the drain.
pub async fn run(shared: Arc<Shared>, link: Arc<Link>) {
    let Some(mode) = shared.limits.mode().cloned() else {
        return;
    };
    let script = redis::Script::new(SCRIPT);
    let mut held: HashMap<String, Held> = HashMap::new();
    // Redis time minus limit-clock time, in ms, as of the last call.
    let mut offset_ms: i64 = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        if shared.shutdown.load(std::sync::atomic::Ordering::Acquire) {
            mode.set_shared(link.live_instances());
            give_back_all(&shared, &link, &script, &mut held).await;
            return;
        }
        let elapsed = last.elapsed().as_secs_f64().max(0.001);
        last = Instant::now();
        let slots = shared.limits.slots();
        let keys: HashSet<&str> = slots.iter().map(|s| s.key.as_str()).collect();
        held.retain(|k, _| keys.contains(k.as_str()));
        let live = link.live_instances();
        let start = limit::now_ms();
        let redis_now = (start as i64 + offset_ms).max(0) as u64 / 1000;
        let asks: Vec<Ask> = slots
            .into_iter()
            .filter_map(|slot| {
                let h = held.entry(slot.key.clone()).or_default();
                plan(slot, h, live, elapsed, start, redis_now)
            })
            .collect();
        let mut ok = true;
        for batch in asks.chunks(BATCH) {
            let out = match call(&link, &script, batch).await {
                Ok(out) => out,
                Err(why) => {
                    tracing::debug!("cluster: limits counted locally this tick: {why}");
                    ok = false;
                    break;
                }
            };
            let redis_ms = out[0] * 1000 + out[1] / 1000;
            // Measured from the call's start: the Redis clock was read
            // later, so leases end early rather than late.
            offset_ms = redis_ms - start as i64;
            for (ask, got) in batch.iter().zip(out[2..].chunks(3)) {
                let h = held.entry(ask.slot.key.clone()).or_default();
                apply(ask, h, got, out[0] as u64, offset_ms, start);
            }
        }
        if ok {
            mode.set_leased(live);
        } else {
            mode.set_shared(live);
        }
    }
}

/// Gives every unused permit back to Redis, with those of replaced leases
/// not yet returned.
async fn give_back_all(
    shared: &Shared,
    link: &Link,
    script: &redis::Script,
    held: &mut HashMap<String, Held>,
) {
    let mut asks = Vec::new();
    for slot in shared.limits.slots().into_iter().filter(|s| !s.tokens) {
        let Some(h) = held.get_mut(&slot.key) else {
            continue;
        };
        let unused = slot.window.lease.replace(0, 0);
        for back in [h.give_back, (h.second, unused)] {
            if back.0 > 0 && back.1 > 0 {
                let (slot, n, owed) = (slot.clone(), 0, 0);
                asks.push(Ask {
                    slot,
                    n,
                    back,
                    owed,
                });
            }
        }
    }
    for batch in asks.chunks(BATCH) {
        if let Err(why) = call(link, script, batch).await {
            tracing::debug!("cluster: leases not given back ({why}); they lapse within a minute");
            return;
        }
    }
}

/// What a window asks of this call, if anything.
fn plan(
    slot: Slot,
    h: &mut Held,
    live: usize,
    elapsed_s: f64,
    now_ms: u64,
    redis_now: u64,
) -> Option<Ask> {
    let w = &slot.window;
    if slot.tokens {
        let add = w.tokens_added.load(Relaxed).saturating_sub(h.tokens_sent);
        if add == 0 && now_ms < h.refreshed_ms + TOKENS_REFRESH_MS {
            return None;
        }
        return Some(Ask {
            slot,
            n: add,
            back: (0, 0),
            owed: 0,
        });
    }
    let demand = w.demand.load(Relaxed);
    let rate = demand.saturating_sub(h.demand_seen) as f64 / elapsed_s;
    h.demand_seen = demand;
    let target = lease_target(slot.per_minute, live, rate);
    let (until, left) = w.lease.peek();
    // Renew once the lease's second has begun: the next one is then in
    // place before this one ends.
    let renew = h.second <= redis_now || until != h.until;
    let want = match renew {
        true => target,
        false if left * 2 < target => target - left,
        false => 0,
    };
    let owed = w.local_admitted.load(Relaxed).saturating_sub(h.owed_sent);
    if want == 0 && h.give_back.1 == 0 && owed == 0 {
        return None;
    }
    Some(Ask {
        slot,
        n: want,
        back: h.give_back,
        owed,
    })
}

/// Permits to hold: half a second of this instance's fair share at
/// least, the last rate over [`LEAD`] when busier, never more than the
/// fair share of the whole limit.
fn lease_target(per_minute: u64, live: usize, rate_per_s: f64) -> u64 {
    let live = live.max(1) as f64;
    let standing = (per_minute as f64 / 60.0 / live * 0.5).ceil();
    let busy = (rate_per_s * LEAD).ceil();
    let cap = (per_minute as f64 / live).ceil();
    (standing.max(busy).min(cap) as u64).clamp(1, MAX_PERMITS)
}

/// Takes a call's answer for one window: `got` is grant, sum, retry.
fn apply(ask: &Ask, h: &mut Held, got: &[i64], redis_s: u64, offset_ms: i64, start: u64) {
    let w = &ask.slot.window;
    let (grant, sum, retry) = (got[0].max(0) as u64, got[1].max(0) as u64, got[2]);
    let full_until = if retry > 0 {
        start + retry as u64 * 1000
    } else {
        0
    };
    w.full_until_ms.store(full_until, Relaxed);
    if ask.slot.tokens {
        h.tokens_sent += ask.n;
        h.refreshed_ms = start;
        let mine = w.sum(limit::now_s());
        w.others.store(sum.saturating_sub(mine), Relaxed);
        return;
    }
    h.give_back = (0, 0);
    h.owed_sent += ask.owed;
    // Charged to the next second, valid until it ends (on our clock).
    let second = redis_s + 1;
    let until = ((second as i64 + 1) * 1000 - offset_ms).max(0) as u64;
    if h.second == second && w.lease.top_up(h.until, grant) {
        return;
    }
    let unused = w.lease.replace(until, grant);
    if h.second != 0 && unused > 0 {
        h.give_back = (h.second, unused);
    }
    h.second = second;
    h.until = until;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_follow_demand_within_the_fair_share() {
        // Idle: half a second of the fair share, at least one.
        assert_eq!(lease_target(40, 2, 0.0), 1);
        assert_eq!(lease_target(60_000, 2, 0.0), 250);
        // Busy: a quarter second of the rate.
        assert_eq!(lease_target(60_000, 2, 4000.0), 1000);
        // Never more than the limit over the live instances.
        assert_eq!(lease_target(40, 2, 1e6), 20);
        assert_eq!(lease_target(u64::MAX / 2, 1, 1e12), MAX_PERMITS);
    }
}
