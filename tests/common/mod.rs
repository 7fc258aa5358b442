//! Test harness: the real `modelgate` binary and real `mock-llm` upstreams
//! on port 0, spoken to over real TCP with a small HTTP/1.1 client.
#![allow(dead_code)]

pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modelgate"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of `mock-llm`, built once on demand with the same profile.
pub fn mock_llm_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let path = bin_dir().join("mock-llm");
    BUILD.call_once(|| {
        if path.exists() {
            return;
        }
        let release = bin_dir().ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "modelgate-loadtest", "--bin", "mock-llm"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build mock-llm");
        assert!(status.success(), "building mock-llm failed");
    });
    assert!(path.exists(), "mock-llm not found at {}", path.display());
    path
}

/// A child process killed when dropped, with its stdout lines collected.
pub struct Proc {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let l = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            lines,
            stderr,
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest.
    pub fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
            {
                return l.trim().to_string();
            }
            if Instant::now() > deadline {
                panic!(
                    "no line {prefix:?}; stdout {:?} stderr {:?}",
                    self.lines.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

pub struct MockLlm {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub name: String,
}

impl MockLlm {
    pub fn start(name: &str) -> MockLlm {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, args: &[&str]) -> MockLlm {
        let mut cmd = Command::new(mock_llm_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--name", name])
            .args(args);
        let proc = Proc::spawn(cmd);
        let addr = proc.wait_line("listening on ").parse().unwrap();
        MockLlm {
            proc,
            addr,
            name: name.into(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests the mock received (`/_mock/requests`).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let r = request(self.addr, "GET", "/_mock/requests", &[], b"");
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        let r = request(self.addr, "GET", "/_mock/stats", &[], b"");
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn clear(&self) {
        request(self.addr, "DELETE", "/_mock/requests", &[], b"");
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: TempDir,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("modelgate-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `[server]`/`[admin]` head every test config starts with.
pub fn server_section(workers: usize) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\ndrain_timeout_ms = 5000\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n"
    )
}

impl Gateway {
    /// Starts the gateway on `body` (services and Model APIs), 2 workers.
    pub fn start(body: &str) -> Gateway {
        Self::start_raw(&format!("{}\n{body}", server_section(2)))
    }

    pub fn start_raw(config: &str) -> Gateway {
        Self::start_wrapped(config, &[])
    }

    /// Like `start_raw`, with the binary run under `wrapper` (e.g.
    /// `["prlimit", "--nofile=200:200", "--"]`).
    pub fn start_wrapped(config: &str, wrapper: &[&str]) -> Gateway {
        let dir = TempDir::new();
        let config_path = dir.0.join("modelgate.toml");
        std::fs::write(&config_path, config).unwrap();
        let bin = env!("CARGO_BIN_EXE_modelgate");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["serve", "--config", config_path.to_str().unwrap()]);
        // Relative paths (the default `store.path`) land in the test's own dir.
        cmd.current_dir(&dir.0);
        let proc = Proc::spawn(cmd);
        let addr = proc.wait_line("modelgate listening on ").parse().unwrap();
        let admin = proc.wait_line("admin listening on ").parse().unwrap();
        let g = Gateway {
            proc,
            addr,
            admin,
            config_path,
            _dir: dir,
        };
        g.wait_ready();
        g
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(r) = try_request(self.admin, "GET", "/readyz", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready: {}",
                self.proc.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        request(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.proc.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str("host: localhost\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body).unwrap()
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(&raw_request(method, path, headers, body))?;
    let mut r = BufReader::new(s);
    read_response(&mut r, method == "HEAD")
}

/// Reads one response (Content-Length, chunked, or until close).
pub fn read_response<R: BufRead>(r: &mut R, head_only: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = get("content-length") {
        body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads a chunked response as it arrives, returning the chunks with the
/// time each arrived (for streaming tests).
/// Chunks of a streamed body with the time each arrived.
pub type TimedChunks = Vec<(Instant, Vec<u8>)>;

pub fn read_chunks<R: BufRead>(r: &mut R) -> std::io::Result<(Response, TimedChunks)> {
    let mut resp = read_head_only(r)?;
    let mut chunks = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream cut",
            ));
        }
        let size = usize::from_str_radix(line.trim(), 16)
            .map_err(|_| std::io::Error::other(line.clone()))?;
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk)?;
        if size == 0 {
            break;
        }
        chunk.truncate(size);
        resp.body.extend_from_slice(&chunk);
        chunks.push((Instant::now(), chunk));
    }
    Ok((resp, chunks))
}

pub fn read_head_only<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    read_response(r, true)
}

/// `data:` payloads of an SSE body.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))
        .collect()
}

/// An address that refuses connections for as long as the returned socket
/// lives: bound but never listening, so no other test can take the port.
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

impl MockLlm {
    /// Connection events the mock logged (`/_mock/events`): `head` (a
    /// request head arrived, before its body), `cut` (the connection ended
    /// mid-request), `peer_closed` (the peer closed before the response was
    /// sent whole), `hung_up` (`x-mock-hang-up`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let r = request(self.addr, "GET", "/_mock/events", &[], b"");
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap()
    }

    /// The events of `kind` for the request with that `x-request-id`.
    pub fn events_of(&self, kind: &str, request_id: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind && e["request_id"] == request_id)
            .collect()
    }
}
