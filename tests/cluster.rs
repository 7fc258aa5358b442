//! Cluster mode (PRODUCT.md §11): real `redis-server` processes on free
//! loopback ports and several real gateways pointed at them — propagation
//! of admin changes, concurrent writers, Redis killed and restarted.
//!
//! Skipped (with a message) only where `redis-server` is not installed;
//! `.ci/run` installs it.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` without persistence, killed when dropped.
struct Redis {
    port: u16,
    proc: Option<std::process::Child>,
}

impl Redis {
    /// `None` (after saying so) when `redis-server` is not installed.
    fn start() -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            eprintln!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { port, proc: None };
        r.restart();
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port (empty: no persistence).
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.proc = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while self.ping().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> std::io::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"PING\r\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        if line.starts_with("+PONG") {
            Ok(())
        } else {
            Err(std::io::Error::other(line))
        }
    }

    /// Sends one inline command over a plain connection; the first line
    /// of the answer, and the line after it.
    fn send(&self, line: &str) -> (String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let (mut first, mut second) = (String::new(), String::new());
        r.read_line(&mut first).unwrap();
        if first.starts_with('$') && !first.starts_with("$-1") {
            r.read_line(&mut second).unwrap();
        }
        (first.trim_end().into(), second.trim_end().into())
    }

    /// One inline command whose answer is one line.
    fn command(&self, line: &str) -> String {
        self.send(line).0
    }

    /// `HGET key field` (`None`: no such field).
    fn hget(&self, key: &str, field: &str) -> Option<String> {
        let (first, value) = self.send(&format!("HGET {key} {field}"));
        assert!(first.starts_with('$'), "HGET answered {first:?}");
        (first != "$-1").then_some(value)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn gateway(redis_url: &str, body: &str) -> Gateway {
    Gateway::start_raw(&format!(
        "{}\n[cluster]\nredis_url = \"{redis_url}\"\nkey_prefix = \"mgtest:\"\n{body}",
        server_section(2)
    ))
}

fn admin(g: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Response {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    request(
        g.admin,
        method,
        &format!("/admin/v1{path}"),
        &[("content-type", "application/json")],
        &bytes,
    )
}

fn readyz(g: &Gateway) -> Value {
    let r = request(g.admin, "GET", "/readyz", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn mock_service(name: &str) -> Value {
    json!({"name": name, "provider": "mock"})
}

fn chat_api(name: &str, domain: &str, service: &str) -> Value {
    json!({"name": name, "scenario": "text", "protocol": "openai", "domains": [domain],
           "service": {"mode": "single", "target": {"service": service, "model": null}}})
}

fn chat(addr: SocketAddr, host: &str) -> Response {
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("host", host), ("content-type", "application/json")],
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
}

/// Polls `f` every 10 ms until it holds; the time it took, or panics
/// after `limit`.
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_change_on_one_instance_reaches_every_instance_within_a_second() {
    let Some(redis) = Redis::start() else { return };
    let gs: Vec<Gateway> = (0..3).map(|_| gateway(&redis.url(), "")).collect();
    for g in &gs {
        let r = readyz(g);
        assert_eq!(r["status"], "ready", "{r}");
    }
    // All three heartbeats seen by each instance.
    for g in &gs {
        until(Duration::from_secs(3), "3 live instances", || {
            readyz(g)["cluster"]["instances"] == 3
        });
    }
    assert_eq!(chat(gs[1].addr, "shared.example.com").status, 404);

    let r = admin(
        &gs[0],
        "POST",
        "/services",
        Some(&mock_service("shared-svc")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let api = chat_api("shared-api", "shared.example.com", "shared-svc");
    let r = admin(&gs[0], "POST", "/model-apis", Some(&api));
    assert_eq!(r.status, 201, "{}", r.text());
    let written = Instant::now();
    // The writer applies before answering.
    assert_eq!(chat(gs[0].addr, "shared.example.com").status, 200);

    for g in &gs[1..] {
        let seen = until(
            Duration::from_secs(1),
            "data plane of another instance",
            || chat(g.addr, "shared.example.com").status == 200,
        );
        let r = admin(g, "GET", "/model-apis/shared-api", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["managed_by_config"], false);
        eprintln!("propagated in {seen:?}");
    }
    assert!(written.elapsed() < Duration::from_secs(2));

    // Deletes travel the same way.
    let r = admin(
        &gs[2],
        "DELETE",
        "/model-apis/shared-api?confirm=shared-api",
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    until(Duration::from_secs(1), "delete on instance 0", || {
        chat(gs[0].addr, "shared.example.com").status == 404
    });
}

#[test]
fn concurrent_writers_on_two_instances_lose_no_acknowledged_change() {
    let Some(redis) = Redis::start() else { return };
    let a = gateway(&redis.url(), "");
    let b = gateway(&redis.url(), "");
    const EACH: usize = 15;
    let acked: Vec<Vec<String>> = std::thread::scope(|s| {
        let writers: Vec<_> = [("a", &a), ("b", &b)]
            .into_iter()
            .map(|(tag, g)| {
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..EACH {
                        let name = format!("svc-{tag}-{i}");
                        let r = admin(g, "POST", "/services", Some(&mock_service(&name)));
                        assert_eq!(r.status, 201, "{name}: {}", r.text());
                        acked.push(name);
                    }
                    acked
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut want: Vec<String> = acked.concat();
    want.sort();
    assert_eq!(want.len(), 2 * EACH);
    for g in [&a, &b] {
        until(Duration::from_secs(1), "every acknowledged service", || {
            let list = admin(g, "GET", "/services", None).json();
            let mut names: Vec<String> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names == want
        });
    }

    // Two instances changing the same resource: one wins, the other is
    // told so (409) rather than silently overwriting.
    let put = |g: &Gateway, provider_model: &str| {
        let mut s = mock_service("svc-a-0");
        s["headers"] = json!({"x-note": provider_model});
        admin(g, "PUT", "/services/svc-a-0", Some(&s))
    };
    // b has seen svc-a-0 (asserted above); both edit from the same version.
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| put(&a, "from-a"));
        let tb = s.spawn(|| put(&b, "from-b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let statuses = [ra.status, rb.status];
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    // Whatever was acknowledged last is what both show.
    until(Duration::from_secs(1), "both agree", || {
        let x = admin(&a, "GET", "/services/svc-a-0", None).json()["headers"].clone();
        let y = admin(&b, "GET", "/services/svc-a-0", None).json()["headers"].clone();
        x == y && !x["x-note"].is_null()
    });
}

#[test]
fn redis_down_keeps_serving_refuses_writes_and_catches_up_when_back() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = gateway(&redis.url(), "");
    let b = gateway(&redis.url(), "");
    assert_eq!(
        admin(&a, "POST", "/services", Some(&mock_service("svc"))).status,
        201
    );
    let r = admin(
        &a,
        "POST",
        "/model-apis",
        Some(&chat_api("api-1", "one.example.com", "svc")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(1), "b serves api-1", || {
        chat(b.addr, "one.example.com").status == 200
    });

    redis.kill();
    for g in [&a, &b] {
        until(Duration::from_secs(3), "readyz degraded", || {
            let r = readyz(g);
            r["status"] == "degraded" && r["cluster"]["redis"] == "down"
        });
        // Still serving from the last snapshot.
        assert_eq!(chat(g.addr, "one.example.com").status, 200);
    }
    let r = admin(&b, "POST", "/services", Some(&mock_service("while-down")));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unavailable");
    assert_eq!(admin(&b, "GET", "/services/while-down", None).status, 404);
    // Reads answer from the last copy.
    assert_eq!(admin(&b, "GET", "/services/svc", None).status, 200);

    // Redis back, empty (no persistence): the instances restore the store
    // from their copy, and go on taking changes.
    redis.restart();
    for g in [&a, &b] {
        until(Duration::from_secs(3), "readyz ready again", || {
            readyz(g)["status"] == "ready"
        });
    }
    let r = admin(
        &b,
        "POST",
        "/model-apis",
        Some(&chat_api("api-2", "two.example.com", "svc")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(1), "a serves api-2", || {
        chat(a.addr, "two.example.com").status == 200
    });
    for g in [&a, &b] {
        assert_eq!(chat(g.addr, "one.example.com").status, 200);
        assert_eq!(admin(g, "GET", "/model-apis/api-1", None).status, 200);
    }
}

fn store_version(g: &Gateway) -> u64 {
    let r = readyz(g);
    r["cluster"]["store_version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no store version: {r}"))
}

fn has_service(g: &Gateway, name: &str) -> bool {
    admin(g, "GET", &format!("/services/{name}"), None).status == 200
}

#[test]
fn a_write_after_redis_came_back_empty_reaches_an_instance_that_reconnects_late() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = gateway(&redis.url(), "");
    let b = gateway(&redis.url(), "");
    let r = admin(&a, "POST", "/services", Some(&mock_service("svc-before")));
    assert_eq!(r.status, 201, "{}", r.text());
    let api = chat_api("api-before", "before.example.com", "svc-before");
    let r = admin(&a, "POST", "/model-apis", Some(&api));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(2), "b serves api-before", || {
        chat(b.addr, "before.example.com").status == 200
    });
    let held_by_b = store_version(&b);

    // b is slow to come back (stopped across the outage: it sees Redis
    // again only after a has written to the new, empty one).
    b.signal("STOP");
    redis.kill();
    until(Duration::from_secs(3), "a sees Redis gone", || {
        readyz(&a)["status"] == "degraded"
    });
    redis.restart();
    until(Duration::from_secs(3), "a sees Redis again", || {
        readyz(&a)["status"] == "ready"
    });
    // Writes on a, as many as it takes for a's store version to reach
    // the one b holds: a counter that restarted from the empty Redis
    // lands exactly on it, and b would take the new store for the one it
    // has.
    let mut after = Vec::new();
    while after.is_empty() || store_version(&a) < held_by_b {
        assert!(after.len() < 10, "a's version never reached b's");
        let name = format!("svc-after-{}", after.len());
        let r = admin(&a, "POST", "/services", Some(&mock_service(&name)));
        assert_eq!(r.status, 201, "{}", r.text());
        after.push(name);
    }
    b.signal("CONT");
    until(
        Duration::from_secs(3),
        "b has every service made on a after the return",
        || after.iter().all(|n| has_service(&b, n)),
    );
    // What was made before the outage survived on both.
    for g in [&a, &b] {
        assert!(has_service(g, "svc-before"));
        assert_eq!(admin(g, "GET", "/model-apis/api-before", None).status, 200);
        assert_eq!(chat(g.addr, "before.example.com").status, 200);
    }
    assert_eq!(store_version(&a), store_version(&b));
    // And b's own writes reach a again.
    let api = chat_api("api-after", "after.example.com", "svc-after-0");
    let r = admin(&b, "POST", "/model-apis", Some(&api));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(2), "a serves api-after", || {
        chat(a.addr, "after.example.com").status == 200
    });
}

#[test]
fn the_newest_copy_reseeds_a_redis_that_came_back_empty() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = gateway(&redis.url(), "");
    let b = gateway(&redis.url(), "");
    let r = admin(&a, "POST", "/services", Some(&mock_service("svc-1")));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(2), "b has svc-1", || {
        has_service(&b, "svc-1")
    });
    // b misses the last write before the outage: a's copy is newer.
    b.signal("STOP");
    let r = admin(&a, "POST", "/services", Some(&mock_service("svc-late")));
    assert_eq!(r.status, 201, "{}", r.text());
    a.signal("STOP");
    redis.kill();
    redis.restart();
    // b, with the older copy, reconnects first and re-seeds the store.
    b.signal("CONT");
    until(Duration::from_secs(3), "b re-seeded Redis", || {
        redis.hget("mgtest:store", "version").is_some()
    });
    // a comes back with the newer copy: it wins.
    a.signal("CONT");
    for g in [&a, &b] {
        until(Duration::from_secs(3), "svc-late on both", || {
            has_service(g, "svc-late")
        });
        assert!(has_service(g, "svc-1"));
    }
    until(Duration::from_secs(2), "one store version", || {
        store_version(&a) == store_version(&b)
    });
    // An instance starting now, with no copy, takes the seed as it is.
    let c = gateway(&redis.url(), "");
    assert!(has_service(&c, "svc-late") && has_service(&c, "svc-1"));
    assert_eq!(store_version(&c), store_version(&a));
    let r = admin(&b, "POST", "/services", Some(&mock_service("svc-2")));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(2), "a and c have svc-2", || {
        has_service(&a, "svc-2") && has_service(&c, "svc-2")
    });
    assert!(has_service(&a, "svc-late") && has_service(&b, "svc-late"));
}

#[test]
fn the_first_write_after_a_quick_redis_restart_is_not_refused() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = gateway(&redis.url(), "");
    let b = gateway(&redis.url(), "");
    let r = admin(&a, "POST", "/services", Some(&mock_service("svc-before")));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_secs(2), "b has svc-before", || {
        has_service(&b, "svc-before")
    });
    // Back within a few ms, before either instance noticed: the kept
    // connections are dead, Redis is up and empty.
    redis.kill();
    redis.restart();
    let r = admin(&a, "POST", "/services", Some(&mock_service("svc-after")));
    assert_eq!(r.status, 201, "{}", r.text());
    until(Duration::from_millis(1500), "b has svc-after", || {
        has_service(&b, "svc-after")
    });
    assert!(has_service(&a, "svc-before") && has_service(&b, "svc-before"));
}

/// Runs `f` with a `Link` to `redis` on a tokio runtime, as the control
/// thread would.
fn with_link<T>(redis: &Redis, f: impl AsyncFnOnce(&modelgate::cluster::Link) -> T) -> T {
    use modelgate::config::cluster::Settings;
    let settings = Settings {
        redis_url: redis.url(),
        key_prefix: "mgtest:".into(),
    };
    let link = modelgate::cluster::Link::new(&settings, "t".into()).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f(&link))
}

#[test]
fn the_store_is_seeded_only_where_there_is_none_or_an_older_untouched_seed() {
    use modelgate::cluster::link::LINEAGE_GAP;
    let Some(redis) = Redis::start() else { return };
    with_link(&redis, async |l| {
        // A first write starts a line of versions far above 0.
        let v1 = l.write_store(0, b"{}").await.unwrap().unwrap();
        assert!(v1 >= LINEAGE_GAP, "{v1}");
        assert_eq!(l.write_store(0, b"{}").await.unwrap(), None, "stale");
        let v2 = l.write_store(v1, b"{}").await.unwrap().unwrap();
        assert_eq!(v2, v1 + 1);
        // A store that was written is never seeded over.
        assert_eq!(l.seed_store(v2, u64::MAX - 1, b"{}").await.unwrap(), None);
    });
    with_link(&redis, async |l| {
        // Gone (as after a restart): seeding takes a version above every
        // one this instance saw, and the store is an untouched seed.
        let v = l.store_version().await.unwrap();
        assert_eq!(redis.command("DEL mgtest:store"), ":1");
        let s1 = l.seed_store(0, 100, b"{\"a\":1}").await.unwrap().unwrap();
        assert!(s1 >= v + LINEAGE_GAP, "{s1} after {v}");
        let head = l.store_head().await.unwrap();
        assert_eq!((head.version, head.seeded_from), (s1, Some(100)));
        // A copy as old or older does not replace it; a newer one does.
        assert_eq!(l.seed_store(s1, 100, b"{}").await.unwrap(), None);
        assert_eq!(l.seed_store(s1, 99, b"{}").await.unwrap(), None);
        assert_eq!(l.seed_store(0, 101, b"{}").await.unwrap(), None, "stale");
        let s2 = l.seed_store(s1, 101, b"{\"b\":2}").await.unwrap().unwrap();
        assert!(s2 > s1);
        assert_eq!(l.read_store().await.unwrap().1.unwrap(), b"{\"b\":2}");
        // The instance that took the seed as it is ranks its copy by the
        // copy the seed came from.
        assert_eq!(l.copy_rank(s2), 101);
        assert_eq!(l.copy_rank(s2 + 1), s2 + 1);
        // The first write on it ends the seed: no copy replaces it now.
        let w = l.write_store(s2, b"{}").await.unwrap().unwrap();
        assert_eq!(l.store_head().await.unwrap().seeded_from, None);
        assert_eq!(l.seed_store(w, u64::MAX - 1, b"{}").await.unwrap(), None);
    });
}

#[test]
fn a_redis_that_answers_garbage_never_stops_the_data_plane() {
    // Answers every connection with bytes that are not RESP, then closes.
    let junk = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = junk.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in junk.incoming().take(200) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"\x00\xffnot redis at all\r\n%%%\r\n");
        }
    });
    let g = gateway(
        &format!("redis://127.0.0.1:{port}/0"),
        "[[services]]\nname = \"m\"\nprovider = \"mock\"\n\
         [[model_apis]]\nname = \"file-api\"\nscenario = \"text\"\nprotocol = \"openai\"\n\
         domains = [\"*\"]\nservice = { mode = \"single\", target = { service = \"m\" } }\n",
    );
    for _ in 0..20 {
        assert_eq!(chat(g.addr, "any.example.com").status, 200);
    }
    let r = admin(&g, "POST", "/services", Some(&mock_service("x")));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(g.proc.child.id() > 0);
    assert_eq!(readyz(&g)["status"], "degraded");
}

#[test]
fn a_malformed_redis_url_fails_check_with_the_field_path() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        "[cluster]\nredis_url = \"redis://host:notaport/0\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.redis_url:"), "{err}");
}

/// One instance's control thread (tokio, as in the gateway) serving the
/// task memory for its workers.
fn task_memory(redis: &Redis, instance: &str, ttl_s: u64) -> modelgate::tasks::ClusterTasks {
    use modelgate::cluster::{tasks, Link};
    use modelgate::config::cluster::Settings;
    let settings = Settings {
        redis_url: redis.url(),
        key_prefix: "mgtest:".into(),
    };
    let link = std::sync::Arc::new(Link::new(&settings, instance.into()).unwrap());
    let (handle, rx) = modelgate::tasks::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(tasks::serve(link, rx, ttl_s));
    });
    handle
}

#[test]
fn a_task_remembered_on_one_instance_is_found_from_another_until_it_expires() {
    use modelgate::tasks::TaskMemory;
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (task_memory(&redis, "a", 2), task_memory(&redis, "b", 2));
    // The workers' side runs on monoio, as the data plane does.
    let worker = std::thread::spawn(move || {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async move {
                a.remember("task-123", "dashscope-east");
                let mut found = None;
                for _ in 0..100 {
                    found = b.recall("task-123").await;
                    if found.is_some() {
                        break;
                    }
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(found.as_deref(), Some("dashscope-east"));
                assert_eq!(b.recall("task-unknown").await, None);
                monoio::time::sleep(Duration::from_millis(2500)).await;
                assert_eq!(b.recall("task-123").await, None, "expired");
            })
    });
    worker.join().unwrap();
}

#[test]
fn a_dashscope_task_submitted_on_one_gateway_is_polled_through_another() {
    let Some(redis) = Redis::start() else { return };
    let (up_a, up_b) = (MockLlm::start("a"), MockLlm::start("b"));
    let body = format!(
        r#"
[[services]]
name = "ds-a"
provider = "dashscope"
base_url = "{a}"
api_keys = ["key-a"]

[[services]]
name = "ds-b"
provider = "dashscope"
base_url = "{b}"
api_keys = ["key-b"]

[[model_apis]]
name = "image"
scenario = "image"
protocol = "dashscope"
domains = ["*"]
service = {{ mode = "by_weight", targets = [
  {{ service = "ds-a", weight = 1 }},
  {{ service = "ds-b", weight = 1 }},
] }}
"#,
        a = up_a.url(),
        b = up_b.url()
    );
    let (g1, g2) = (gateway(&redis.url(), &body), gateway(&redis.url(), &body));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let r = request(
            g1.addr,
            "POST",
            "/api/v1/services/aigc/text2image/image-synthesis",
            &[
                ("content-type", "application/json"),
                ("x-dashscope-async", "enable"),
            ],
            br#"{"model":"wanx-v1","input":{"prompt":"a cat"}}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["output"]["task_id"].as_str().unwrap().to_string();
        tasks.push((id, r.header("x-mock-name").unwrap().to_string()));
    }
    assert!(tasks.iter().any(|(_, by)| by == "a") && tasks.iter().any(|(_, by)| by == "b"));
    // Each poll on the other gateway, twice (the second from its own
    // memory), reaches the service that accepted the task.
    for (id, by) in &tasks {
        for _ in 0..2 {
            let r = request(g2.addr, "GET", &format!("/api/v1/tasks/{id}"), &[], b"");
            assert_eq!(r.status, 200, "{id}: {}", r.text());
            assert_eq!(r.json()["served_by"], by.as_str(), "{id}");
        }
    }
}

/// Config with Model APIs limited to `(name, requests_per_minute)` each,
/// the same file on every instance: same names, same cluster counts.
fn limited_apis(apis: &[(&str, u64)]) -> String {
    let mut s = String::from("[[services]]\nname = \"svc\"\nprovider = \"mock\"\n");
    for (name, per_minute) in apis {
        s += &format!(
            "[[model_apis]]\nname = \"{name}\"\nscenario = \"text\"\nprotocol = \"openai\"\n\
             domains = [\"{name}.example.com\"]\n\
             service = {{ mode = \"single\", target = {{ service = \"svc\" }} }}\n\
             limits = {{ requests_per_minute = {per_minute} }}\n"
        );
    }
    s
}

/// Both instances counted each other (heartbeats) and lease from Redis.
fn until_both_live(gateways: &[&Gateway]) {
    for g in gateways {
        until(Duration::from_secs(5), "two live instances", || {
            readyz(g)["cluster"]["instances"] == 2
        });
    }
}

#[test]
fn a_limit_holds_across_instances_without_a_redis_call_per_request() {
    let Some(redis) = Redis::start() else { return };
    let config = limited_apis(&[("small", 40), ("large", 600)]);
    let a = gateway(&redis.url(), &config);
    let b = gateway(&redis.url(), &config);
    until_both_live(&[&a, &b]);

    // Alternating requests, paced over about 2 s: each instance alone
    // would admit 40; together they must admit at most 40.
    let mut admitted = [0usize; 2];
    let mut refusal = None;
    for i in 0..200 {
        let g = [&a, &b][i % 2];
        let r = chat(g.addr, "small.example.com");
        match r.status {
            200 => admitted[i % 2] += 1,
            429 => refusal = Some(r),
            s => panic!("unexpected {s}: {}", r.text()),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = admitted[0] + admitted[1];
    assert!(total <= 40, "admitted {admitted:?} past a limit of 40");
    assert!(total >= 36, "admitted only {admitted:?} of 40");
    assert!(admitted[0] > 0 && admitted[1] > 0, "{admitted:?}");
    let r = refusal.expect("refused past the limit");
    assert_eq!(
        r.json()["error"]["code"],
        "rate_limit_exceeded",
        "{}",
        r.text()
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "retry-after {retry}");

    // Four clients at once, two per instance, for 2.5 s: at most N + 2%.
    let deadline = Instant::now() + Duration::from_millis(2500);
    let clients: Vec<_> = [a.addr, a.addr, b.addr, b.addr]
        .into_iter()
        .map(|addr| {
            std::thread::spawn(move || {
                let (mut ok, mut sent) = (0usize, 0usize);
                while Instant::now() < deadline && sent < 20_000 {
                    sent += 1;
                    match chat(addr, "large.example.com").status {
                        200 => ok += 1,
                        429 => {}
                        s => panic!("unexpected {s}"),
                    }
                }
                (ok, sent)
            })
        })
        .collect();
    let (mut ok, mut sent) = (0, 0);
    for c in clients {
        let (o, s) = c.join().unwrap();
        ok += o;
        sent += s;
    }
    assert!(
        sent > 1200,
        "only {sent} requests sent: the test proves nothing"
    );
    assert!(ok <= 612, "admitted {ok} of {sent} past 600 + 2%");
    assert!(ok >= 540, "admitted only {ok} of {sent} against 600");
}

#[test]
fn redis_down_shares_each_limit_among_the_instances_last_counted() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let config = limited_apis(&[("small", 40)]);
    let a = gateway(&redis.url(), &config);
    let b = gateway(&redis.url(), &config);
    until_both_live(&[&a, &b]);
    redis.kill();
    until(Duration::from_secs(3), "readyz degraded", || {
        readyz(&a)["status"] == "degraded" && readyz(&b)["status"] == "degraded"
    });
    // Two instances were live: each now counts to 40 / 2 locally.
    let admitted = (0..60)
        .filter(|_| chat(a.addr, "small.example.com").status == 200)
        .count();
    assert_eq!(admitted, 20);
    let r = chat(a.addr, "small.example.com");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("40 requests per minute"), "{}", r.text());
    // The other instance has its own share.
    let admitted = (0..30)
        .filter(|_| chat(b.addr, "small.example.com").status == 200)
        .count();
    assert_eq!(admitted, 20);
}

#[test]
fn tokens_used_on_one_instance_count_on_another() {
    let Some(redis) = Redis::start() else { return };
    let config = limited_apis(&[])
        + "[[model_apis]]\nname = \"tok\"\nscenario = \"text\"\nprotocol = \"openai\"\n\
           domains = [\"tok.example.com\"]\n\
           service = { mode = \"single\", target = { service = \"svc\" } }\n\
           limits = { tokens_per_minute = 100 }\n";
    let a = gateway(&redis.url(), &config);
    let b = gateway(&redis.url(), &config);
    until_both_live(&[&a, &b]);
    // Spend the budget on a alone.
    let mut used = 0;
    while chat(a.addr, "tok.example.com").status == 200 {
        used += 1;
        assert!(used < 200, "a never ran out of 100 tokens per minute");
    }
    assert!(used > 0);
    // b has served nothing, yet refuses its first request once it has
    // heard of a's usage (a sends it within a tick, b re-reads within
    // half a second).
    std::thread::sleep(Duration::from_millis(800));
    let r = chat(b.addr, "tok.example.com");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("100 tokens per minute"), "{}", r.text());
}

#[test]
fn a_draining_instance_gives_its_leased_permits_back() {
    let Some(redis) = Redis::start() else { return };
    let config = limited_apis(&[("small", 40)]);
    let a = gateway(&redis.url(), &config);
    until(Duration::from_secs(5), "a counted itself", || {
        readyz(&a)["cluster"]["instances"] == 1
    });
    let paced = |g: &Gateway, n: usize| {
        (0..n)
            .filter(|_| {
                let ok = chat(g.addr, "small.example.com").status == 200;
                std::thread::sleep(Duration::from_millis(20));
                ok
            })
            .count()
    };
    let used_on_a = paced(&a, 25);
    assert!((1..=25).contains(&used_on_a), "{used_on_a}");
    let b = gateway(&redis.url(), &config);
    // a leaves: what it leased and did not use goes back at once.
    a.signal("TERM");
    until(Duration::from_secs(5), "only b counted", || {
        readyz(&b)["cluster"]["instances"] == 1
    });
    let used_on_b = paced(&b, 100);
    assert_eq!(used_on_a + used_on_b, 40, "a {used_on_a}, b {used_on_b}");
}
