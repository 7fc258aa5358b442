//! Heap allocations per proxied request, counted (issue 10 §3): the real
//! gateway (`runtime::serve`, one worker) runs in this process under a
//! counting allocator, between a plain-socket client and upstream that
//! allocate nothing per request themselves. Not a timing benchmark.
//!
//!   cargo bench --bench allocs

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 178\r\n\r\n{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello!\"},\"finish_reason\":\"stop\"}],\"usage\":{}}";
const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128,"stream":false,"user":"bench-user-42"}"#;

/// Reads one HTTP message (head + Content-Length body) into `buf`; 0 when
/// the peer closed first.
fn read_message(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        let r = s.read(&mut buf[n..]).unwrap_or(0);
        if r == 0 {
            return 0;
        }
        n += r;
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while n < end + 4 + len {
                n += s.read(&mut buf[n..]).expect("read");
            }
            return n;
        }
    }
}

fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 64 * 1024];
                // Until modelgate closes the connection.
                while read_message(&mut s, &mut buf) > 0 {
                    if s.write_all(ANSWER).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Allocations per request of `n` sequential requests on one connection.
fn measure(addr: SocketAddr, n: u64) -> (f64, f64) {
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nauthorization: Bearer sk-client\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..200 {
        s.write_all(req.as_bytes()).unwrap();
        assert!(read_message(&mut s, &mut buf) > 0, "modelgate closed");
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        s.write_all(req.as_bytes()).unwrap();
        assert!(read_message(&mut s, &mut buf) > 0, "modelgate closed");
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn main() {
    let up = upstream();
    let dir = std::env::temp_dir().join(format!("modelgate-allocs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}/state.json\"\n[log]\naccess = \"off\"\nlevel = \"error\"\n\
         [[services]]\nname = \"up\"\nprovider = \"openai_compatible\"\nbase_url = \"http://{up}\"\n\
         [[model_apis]]\nname = \"chat\"\nscenario = \"text\"\nprotocol = \"openai\"\ndomains = [\"*\"]\nservice = {{ mode = \"single\", target = {{ service = \"up\" }} }}\n",
        dir.display()
    );
    let path = dir.join("modelgate.toml");
    std::fs::write(&path, config).unwrap();
    let raw = modelgate::config::load_file(path.to_str().unwrap()).unwrap();
    let p = path.to_str().unwrap().to_string();
    std::thread::spawn(move || modelgate::runtime::serve(&p, raw));
    let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(gateway).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = std::env::var("ALLOC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (direct_a, direct_b) = measure(up, n);
    let (proxied_a, proxied_b) = measure(gateway, n);
    println!(
        "allocations per request (250-byte chat request, one keep-alive connection, {n} requests):"
    );
    println!("  client + upstream alone: {direct_a:.2} allocations, {direct_b:.0} bytes");
    println!("  through modelgate:       {proxied_a:.2} allocations, {proxied_b:.0} bytes");
    println!(
        "  modelgate's own:         {:.2} allocations, {:.0} bytes",
        proxied_a - direct_a,
        proxied_b - direct_b
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
