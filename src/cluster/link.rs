//! The connection to Redis and the few commands cluster mode sends.
//!
//! Keys, all under the prefix:
//! - `store`: hash `{version, state}`, the admin store as JSON, changed only
//!   by [`CAS`] (version check, write, publish in one script);
//! - `changes`: pub/sub channel carrying each new store version;
//! - `instance:{id}`: heartbeat of a live instance, with a TTL;
//! - `task:{id}`: the service that accepted a DashScope task, with a TTL;
//! - `limit:{window}`: a limit's count across the cluster, one hash field
//!   per second (see `cluster::limits`).

use crate::config::cluster::Settings;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Connect and response timeout: a Redis that hangs must not hang the
/// admin API for long, and is then treated as down.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Heartbeat TTL: an instance not heard from for this long is gone.
pub const HEARTBEAT_TTL_S: u64 = 5;

/// Writes the store only if it is still at the version the writer read.
/// Returns the new version, or -1 when someone else wrote first.
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return -1 end
local n = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'version', n, 'state', ARGV[2])
redis.call('PUBLISH', KEYS[2], n)
return n
";

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
    cas: redis::Script,
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
            cas: redis::Script::new(CAS),
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

    async fn conn(&self) -> Result<MultiplexedConnection, Down> {
        if let Some(c) = self.conn.lock().expect("redis conn lock").clone() {
            return Ok(c);
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await
            .map_err(|e| self.failed(e))?;
        *self.conn.lock().expect("redis conn lock") = Some(c.clone());
        Ok(c)
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
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T, Down> {
        let mut c = self.conn().await?;
        match f(&mut c).await {
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

    /// The store's version (0: never written).
    pub async fn store_version(&self) -> Result<u64, Down> {
        let key = self.key("store");
        let v: Option<u64> = self
            .run(async |c| {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("version")
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The store's version and JSON (version 0 and `None`: never written).
    pub async fn read_store(&self) -> Result<(u64, Option<Vec<u8>>), Down> {
        let key = self.key("store");
        let (version, state): (Option<u64>, Option<Vec<u8>>) = self
            .run(async |c| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("version")
                    .arg("state")
                    .query_async(c)
                    .await
            })
            .await?;
        Ok((version.unwrap_or(0), state))
    }

    /// Writes `state` if the store is still at `version`; `Ok(None)` when
    /// another writer got there first.
    pub async fn write_store(&self, version: u64, state: &[u8]) -> Result<Option<u64>, Down> {
        let (key, channel) = (self.key("store"), self.key("changes"));
        let script = self.cas.clone();
        let n: i64 = self
            .run(async |c| {
                script
                    .key(&key)
                    .key(&channel)
                    .arg(version)
                    .arg(state)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(u64::try_from(n).ok())
    }

    /// Refreshes this instance's heartbeat key and counts the live ones.
    pub async fn heartbeat(&self) -> Result<usize, Down> {
        let me = self.key(&format!("instance:{}", self.instance));
        let pattern = self.key("instance:*");
        let count = self
            .run(async |c| {
                let () = redis::cmd("SET")
                    .arg(&me)
                    .arg(1)
                    .arg("EX")
                    .arg(HEARTBEAT_TTL_S)
                    .query_async(c)
                    .await?;
                let mut cursor = 0u64;
                let mut count = 0usize;
                // Bounded: a prefix shared with 100 × 1000 other keys is
                // not a deployment we count exactly.
                for _ in 0..100 {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(c)
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
        let key = self.key(&format!("task:{id}"));
        self.run(async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(service)
                .arg("EX")
                .arg(ttl_s)
                .query_async(c)
                .await
        })
        .await
    }

    /// The service that accepted task `id`, if any instance remembered it.
    pub async fn get_task(&self, id: &str) -> Result<Option<String>, Down> {
        let key = self.key(&format!("task:{id}"));
        self.run(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
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
        self.run(async |c| {
            let mut call = script.prepare_invoke();
            for k in keys {
                call.key(self.key(k));
            }
            for a in args {
                call.arg(*a);
            }
            call.invoke_async(c).await
        })
        .await
    }

    /// Removes this instance's heartbeat (clean shutdown).
    pub async fn leave(&self) {
        let me = self.key(&format!("instance:{}", self.instance));
        let _: Result<i64, _> = self
            .run(async |c| redis::cmd("DEL").arg(&me).query_async(c).await)
            .await;
    }
}
