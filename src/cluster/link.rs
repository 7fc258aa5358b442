//! The connection to Redis and the few commands cluster mode sends.
//!
//! Keys, all under the prefix:
//! - `store`: hash `{version, state}`, the admin store as JSON, changed only
//!   by [`CAS`] (version check, write, publish in one script) and [`SEED`];
//!   while it is a re-seeded copy no write has touched yet, also
//!   `{seed_from, seed_version}` (see below);
//! - `changes`: pub/sub channel carrying each new store version;
//! - `instance:{id}`: heartbeat of a live instance, with a TTL;
//! - `task:{id}`: the service that accepted a DashScope task, with a TTL;
//! - `limit:{window}`: a limit's count across the cluster, one hash field
//!   per second (see `cluster::limits`).
//!
//! Store versions. A version names one state of the store and is compared
//! for equality only ("is Redis still at the state I hold?"). A write adds
//! one. A store written where there was none — the first write, or one
//! into a Redis that came back empty — starts a new line of versions,
//! [`lineage_start`]: at least 2^31 above the highest version this
//! instance has seen, plus a random part. So a Redis that lost the store
//! never counts up again through versions instances still hold: an
//! instance's copy is ahead of the one Redis was re-seeded from by a few
//! writes, never 2^31, and every version of the new line lies above it
//! (the random part keeps apart two lines started from the same copy).
//!
//! Re-seeding. An instance holding a copy that finds the store missing
//! writes its copy back ([`Link::seed_store`]), recording which version the
//! copy had (`seed_from`) and the seed's own version (`seed_version`). Until
//! the first write on top of it (version still `seed_version`), an
//! instance whose copy is newer — a higher version than `seed_from` —
//! replaces the seed with its own: when several reconnect, the newest copy
//! wins. Once a write has landed on a seed it is the cluster's store.

use crate::config::cluster::Settings;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Connect and response timeout: a Redis that hangs must not hang the
/// admin API for long, and is then treated as down.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Heartbeat TTL: an instance not heard from for this long is gone.
pub const HEARTBEAT_TTL_S: u64 = 5;

/// Writes the store only if it is still at the version the writer read
/// (ARGV[1]; "0": no store): sets version ARGV[2] and state ARGV[3] (a
/// written store is no longer an untouched seed) and publishes the new
/// version. 1, or -1 when someone else wrote first.
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'state', ARGV[3])
redis.call('HDEL', KEYS[1], 'seed_from', 'seed_version')
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
";

/// Re-seeds the store with a copy of version ARGV[2] as version ARGV[3]
/// (state ARGV[4]), if the store is still at version ARGV[1] and that is
/// either no store ("0") or an untouched seed made from an older copy.
/// 1, or -1 when the store changed or holds a copy at least as new.
const SEED: &str = r"
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return -1 end
if v ~= '0' then
  local f = redis.call('HMGET', KEYS[1], 'seed_from', 'seed_version')
  if f[2] ~= v or not f[1] or tonumber(f[1]) >= tonumber(ARGV[2]) then return -1 end
end
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'state', ARGV[4],
  'seed_from', ARGV[2], 'seed_version', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
";

/// The least distance between a new line of store versions and the
/// highest version seen before it (see the module doc).
pub const LINEAGE_GAP: u64 = 1 << 31;

/// The first version of a new line of store versions, for an instance
/// that has seen versions up to `highest`: in
/// `[highest + 2^31, highest + 2^32)`.
pub fn lineage_start(highest: u64) -> u64 {
    highest
        .saturating_add(LINEAGE_GAP)
        .saturating_add(fastrand::u64(0..LINEAGE_GAP))
}

/// The store's version, and whether it is an untouched re-seeded copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// 0: no store.
    pub version: u64,
    /// While the store is a re-seeded copy no write has touched: the
    /// version that copy had on the instance that wrote it back.
    pub seeded_from: Option<u64>,
}

/// Why a Redis command did not do its work.
#[derive(Debug)]
pub struct Down(pub String);

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis unreachable: {}", self.0)
    }
}

pub struct Link {
    client: redis::Client,
    pub prefix: String,
    /// This instance's name in heartbeats.
    pub instance: String,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// Live instances, as last counted (at least 1: this one).
    live: AtomicUsize,
    /// The highest store version read or written here: a new line of
    /// versions starts above it.
    highest: AtomicU64,
    /// The last untouched re-seeded store read or written here: its
    /// version and the version of the copy it was made from.
    seed: Mutex<Option<(u64, u64)>>,
    cas: redis::Script,
    seed_script: redis::Script,
}

impl Link {
    pub fn new(settings: &Settings, instance: String) -> Result<Link, String> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| format!("cluster.redis_url: {e}"))?;
        Ok(Link {
            client,
            prefix: settings.key_prefix.clone(),
            instance,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            live: AtomicUsize::new(1),
            highest: AtomicU64::new(0),
            seed: Mutex::new(None),
            cas: redis::Script::new(CAS),
            seed_script: redis::Script::new(SEED),
        })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the last command reached Redis.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Live instances as last counted; kept while Redis is down.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Acquire).max(1)
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    fn config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
    }

    /// The connection, and whether it was kept from an earlier command.
    async fn conn(&self) -> Result<(MultiplexedConnection, bool), Down> {
        if let Some(c) = self.conn.lock().expect("redis conn lock").clone() {
            return Ok((c, true));
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await
            .map_err(|e| self.failed(e))?;
        *self.conn.lock().expect("redis conn lock") = Some(c.clone());
        Ok((c, false))
    }

    /// Marks Redis down and drops the connection, so the next command
    /// connects anew.
    fn failed(&self, e: redis::RedisError) -> Down {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!("cluster: Redis unreachable ({e}); serving from the last snapshot");
        }
        *self.conn.lock().expect("redis conn lock") = None;
        Down(e.to_string())
    }

    fn reached(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("cluster: Redis reachable");
        }
    }

    /// Runs one command (or script) and keeps `up` truthful.
    ///
    /// A kept connection found dropped (Redis restarted since the last
    /// command: the command never reached it) is replaced and the command
    /// sent once more, so the first write after a restart is not refused
    /// for a socket that was already dead.
    async fn run<T, F>(&self, f: impl Fn(MultiplexedConnection) -> F) -> Result<T, Down>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let (c, kept) = self.conn().await?;
        let mut answer = f(c).await;
        if kept && answer.as_ref().is_err_and(|e| e.is_connection_dropped()) {
            self.conn.lock().expect("redis conn lock").take();
            answer = f(self.conn().await?.0).await;
        }
        match answer {
            Ok(v) => {
                self.reached();
                Ok(v)
            }
            // Redis answered with an error reply: reachable, the command
            // failed.
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                self.reached();
                Err(Down(e.to_string()))
            }
            // No answer, or bytes that are not Redis's: down, and the next
            // command opens a new connection.
            Err(e) => Err(self.failed(e)),
        }
    }

    fn saw(&self, version: u64) {
        self.highest.fetch_max(version, Ordering::AcqRel);
    }

    /// The highest store version this instance has read or written.
    pub fn highest_version(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }

    /// How new the copy held at `version` is, for comparison with a seed's
    /// `seeded_from`: its version, except for an untouched seed taken as
    /// it was (then the version of the copy that seed was made from);
    /// 0 when nothing was ever held.
    pub fn copy_rank(&self, version: u64) -> u64 {
        if version == 0 {
            return self.highest_version();
        }
        match *self.seed.lock().expect("seed lock") {
            Some((v, from)) if v == version => from,
            _ => version,
        }
    }

    /// `seed_from` of a store at `version` while it is an untouched seed
    /// (`seed_version` is still its version).
    fn seeded_from(version: u64, from: Option<Vec<u8>>, at: Option<Vec<u8>>) -> Option<u64> {
        let num = |b: Option<Vec<u8>>| std::str::from_utf8(&b?).ok()?.parse::<u64>().ok();
        num(from).filter(|_| version != 0 && num(at) == Some(version))
    }

    /// The store's version (0: never written).
    pub async fn store_version(&self) -> Result<u64, Down> {
        let key = &self.key("store");
        let v: Option<u64> = self
            .run(|mut c| async move {
                redis::cmd("HGET")
                    .arg(key)
                    .arg("version")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let v = v.unwrap_or(0);
        self.saw(v);
        Ok(v)
    }

    /// The store's version and whether it is an untouched seed: what is
    /// read every second.
    pub async fn store_head(&self) -> Result<Head, Down> {
        let key = &self.key("store");
        type Fields = (Option<u64>, Option<Vec<u8>>, Option<Vec<u8>>);
        let (version, from, at): Fields = self
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("version")
                    .arg("seed_from")
                    .arg("seed_version")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let version = version.unwrap_or(0);
        self.saw(version);
        let seeded_from = Self::seeded_from(version, from, at);
        Ok(Head {
            version,
            seeded_from,
        })
    }

    /// The store's version and JSON (version 0 and `None`: never written),
    /// read to be taken as this instance's copy: an untouched seed is
    /// remembered (see [`Link::copy_rank`]).
    pub async fn read_store(&self) -> Result<(u64, Option<Vec<u8>>), Down> {
        let key = &self.key("store");
        type Fields = (
            Option<u64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let (version, state, from, at): Fields = self
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("version")
                    .arg("state")
                    .arg("seed_from")
                    .arg("seed_version")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let version = version.unwrap_or(0);
        self.saw(version);
        if let Some(from) = Self::seeded_from(version, from, at) {
            *self.seed.lock().expect("seed lock") = Some((version, from));
        }
        Ok((version, state))
    }

    /// Writes `state` if the store is still at `version` (0: there is no
    /// store); the new version, or `Ok(None)` when another writer got
    /// there first.
    pub async fn write_store(&self, version: u64, state: &[u8]) -> Result<Option<u64>, Down> {
        let next = if version == 0 {
            lineage_start(self.highest_version())
        } else {
            version.saturating_add(1)
        };
        let (key, channel) = (&self.key("store"), &self.key("changes"));
        let script = &self.cas;
        let n: i64 = self
            .run(|mut c| async move {
                script
                    .key(key)
                    .key(channel)
                    .arg(version)
                    .arg(next)
                    .arg(state)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if n != 1 {
            return Ok(None);
        }
        self.saw(next);
        Ok(Some(next))
    }

    /// Writes this instance's copy `state`, held at version `from`, back
    /// as the store, if the store is still at `version` and that is no
    /// store (0) or an untouched seed made from an older copy. The seed's
    /// version, or `Ok(None)` when the store changed or holds a copy at
    /// least as new.
    pub async fn seed_store(
        &self,
        version: u64,
        from: u64,
        state: &[u8],
    ) -> Result<Option<u64>, Down> {
        let next = lineage_start(self.highest_version().max(version));
        let (key, channel) = (&self.key("store"), &self.key("changes"));
        let script = &self.seed_script;
        let n: i64 = self
            .run(|mut c| async move {
                script
                    .key(key)
                    .key(channel)
                    .arg(version)
                    .arg(from)
                    .arg(next)
                    .arg(state)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if n != 1 {
            return Ok(None);
        }
        *self.seed.lock().expect("seed lock") = Some((next, from));
        self.saw(next);
        Ok(Some(next))
    }

    /// Refreshes this instance's heartbeat key and counts the live ones.
    pub async fn heartbeat(&self) -> Result<usize, Down> {
        let me = &self.key(&format!("instance:{}", self.instance));
        let pattern = &self.key("instance:*");
        let count = self
            .run(|mut c| async move {
                let () = redis::cmd("SET")
                    .arg(me)
                    .arg(1)
                    .arg("EX")
                    .arg(HEARTBEAT_TTL_S)
                    .query_async(&mut c)
                    .await?;
                let mut cursor = 0u64;
                let mut count = 0usize;
                // Bounded: a prefix shared with 100 × 1000 other keys is
                // not a deployment we count exactly.
                for _ in 0..100 {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    count += keys.len();
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                Ok(count)
            })
            .await?;
        self.live.store(count.max(1), Ordering::Release);
        Ok(count)
    }

    /// Remembers which service accepted DashScope task `id`, for `ttl_s`.
    pub async fn put_task(&self, id: &str, service: &str, ttl_s: u64) -> Result<(), Down> {
        let key = &self.key(&format!("task:{id}"));
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(service)
                .arg("EX")
                .arg(ttl_s)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// The service that accepted task `id`, if any instance remembered it.
    pub async fn get_task(&self, id: &str) -> Result<Option<String>, Down> {
        let key = &self.key(&format!("task:{id}"));
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// Runs `script` over `keys` (each under the prefix) with `args`; the
    /// script answers a list of integers.
    pub async fn eval(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[u64],
    ) -> Result<Vec<i64>, Down> {
        self.run(|mut c| async move {
            let mut call = script.prepare_invoke();
            for k in keys {
                call.key(self.key(k));
            }
            for a in args {
                call.arg(*a);
            }
            call.invoke_async(&mut c).await
        })
        .await
    }

    /// Removes this instance's heartbeat (clean shutdown).
    pub async fn leave(&self) {
        let me = &self.key(&format!("instance:{}", self.instance));
        let _: Result<i64, _> = self
            .run(|mut c| async move { redis::cmd("DEL").arg(me).query_async(&mut c).await })
            .await;
    }
}
