//! Operations on bare metal (PRODUCT.md §15): one owner per port, logs
//! without colour codes when redirected, the systemd unit.

mod common;
use common::{Gateway, TempDir};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BODY: &str = r#"
[[services]]
name = "mock"
provider = "mock"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "mock" } }
"#;

/// A port nobody listens on right now (bound on port 0, then closed).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(listen: &str, admin: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\nworkers = 2\ndrain_timeout_ms = 5000\n\
         [admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"info\"\n{BODY}"
    )
}

/// Runs `modelgate serve` on `config` and waits (at most 5 s) for it to
/// exit: its exit code, stdout and stderr. A process still running then is
/// killed and reported as such.
fn serve_expecting_exit(config: &str) -> (Option<i32>, String, String) {
    let dir = TempDir::new();
    let path = dir.0.join("second.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn answers(g: &Gateway) {
    for _ in 0..10 {
        let r = g.post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// A second `serve` on a data-plane port another instance holds exits 1
/// with `address in use: <addr>` before it binds anything — it would
/// otherwise join the SO_REUSEPORT group and take part of the traffic —
/// and the first instance keeps answering every request.
#[test]
fn second_instance_on_a_held_data_port_is_refused() {
    let listen = format!("127.0.0.1:{}", free_port());
    let first = Gateway::start_raw(&config(&listen, "127.0.0.1:0"));
    assert_eq!(first.addr.to_string(), listen);
    let (code, out, err) = serve_expecting_exit(&config(&listen, "127.0.0.1:0"));
    assert_eq!(
        code,
        Some(1),
        "second instance: stdout {out:?} stderr {err:?}"
    );
    assert!(
        err.contains(&format!("address in use: {listen}")),
        "stderr: {err}"
    );
    assert!(!out.contains("listening on"), "bound anyway: {out}");
    answers(&first);
}

/// The same for the admin address: refused before the data plane binds.
#[test]
fn second_instance_on_a_held_admin_port_is_refused() {
    let admin = format!("127.0.0.1:{}", free_port());
    let first = Gateway::start_raw(&config("127.0.0.1:0", &admin));
    assert_eq!(first.admin.to_string(), admin);
    let (code, out, err) = serve_expecting_exit(&config("127.0.0.1:0", &admin));
    assert_eq!(
        code,
        Some(1),
        "second instance: stdout {out:?} stderr {err:?}"
    );
    assert!(
        err.contains(&format!("address in use: {admin}")),
        "stderr: {err}"
    );
    assert!(!out.contains("listening on"), "bound anyway: {out}");
    answers(&first);
}

/// A TLS listen address held by another program (here a plain listener of
/// the test itself) is refused the same way, naming that address.
#[test]
fn a_held_tls_address_is_refused() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls = held.local_addr().unwrap().to_string();
    let dir = TempDir::new();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.key_pair.serialize_pem()).unwrap();
    let config = config("127.0.0.1:0", "127.0.0.1:0").replace(
        "[admin]",
        &format!(
            "[server.tls]\nlisten = [\"{tls}\"]\n[[server.tls.certs]]\n\
             domains = [\"localhost\"]\ncert = {cert:?}\nkey = {key:?}\n[admin]"
        ),
    );
    let (code, out, err) = serve_expecting_exit(&config);
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    assert!(
        err.contains(&format!("address in use: {tls}")),
        "stderr: {err}"
    );
    assert!(!out.contains("listening on"), "bound anyway: {out}");
    drop(held);
}

/// A port freed by a stopped instance (its connections in TIME_WAIT) can
/// be served again at once: the probe is not fooled by TIME_WAIT.
#[test]
fn a_port_freed_by_a_stopped_instance_is_served_again() {
    let listen = format!("127.0.0.1:{}", free_port());
    let first = Gateway::start_raw(&config(&listen, "127.0.0.1:0"));
    answers(&first);
    drop(first);
    let second = Gateway::start_raw(&config(&listen, "127.0.0.1:0"));
    assert_eq!(second.addr.to_string(), listen);
    answers(&second);
}

/// Logs written to a pipe (not a terminal) carry no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let g = Gateway::start_raw(&config("127.0.0.1:0", "127.0.0.1:0"));
    answers(&g);
    let err = g.proc.stderr_text();
    // `level = "info"`: at least the io line is logged.
    assert!(err.contains("INFO"), "no log lines: {err:?}");
    assert!(!err.contains("\x1b["), "colour codes in: {err:?}");
}

/// `packaging/modelgate.service` holds the keys the issue asks for, and
/// `systemd-analyze verify` (where installed) accepts it.
#[test]
fn systemd_unit_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/modelgate.service");
    let unit = std::fs::read_to_string(path).unwrap();
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        assert!(!section.is_empty(), "key outside a section: {line:?}");
        keys.push((section.clone(), k.trim().into(), v.trim().into()));
    }
    let get = |s: &str, k: &str| {
        keys.iter()
            .find(|(ks, kk, _)| ks == s && kk == k)
            .map(|(_, _, v)| v.as_str())
            .unwrap_or_else(|| panic!("[{s}] {k} missing"))
    };
    assert_eq!(get("Service", "Type"), "simple");
    assert!(get("Service", "ExecStart").contains("--config /etc/modelgate/modelgate.toml"));
    assert_eq!(get("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(get("Service", "KillSignal"), "SIGTERM");
    assert_eq!(get("Service", "LimitNOFILE"), "1048576");
    assert_eq!(get("Service", "Restart"), "on-failure");
    assert_eq!(get("Service", "User"), "modelgate");
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");

    // `systemd-analyze verify` wants the ExecStart binary to exist: point a
    // copy of the unit at the binary the tests built.
    let Ok(which) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: only the keys were checked");
        return;
    };
    assert!(which.status.success());
    let dir = TempDir::new();
    let copy = dir.0.join("modelgate.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/modelgate", env!("CARGO_BIN_EXE_modelgate")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // It exits 0 even on an unknown key or a bad value, naming the unit's
    // file and line: any line naming the unit is a complaint. Lines about
    // other units (a container without a booted systemd) do not count.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("modelgate.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {err}");
}

/// `[package.metadata.deb]` names files that exist: every asset but the
/// release binary (built by `cargo deb`), the unit in `unit-scripts`, and
/// executable maintainer scripts that keep the debhelper token (where
/// cargo-deb puts the unit's enable/start snippets).
#[test]
fn deb_metadata_names_existing_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    for asset in deb["assets"].as_array().unwrap() {
        let src = asset[0].as_str().unwrap();
        if src.starts_with("target/") {
            continue;
        }
        assert!(root.join(src).is_file(), "asset {src} missing");
    }
    assert_eq!(
        deb["conf-files"][0].as_str(),
        Some("/etc/modelgate/modelgate.toml")
    );
    let units = &deb["systemd-units"];
    let unit = root
        .join(units["unit-scripts"].as_str().unwrap())
        .join(format!("{}.service", units["unit-name"].as_str().unwrap()));
    assert!(unit.is_file(), "{} missing", unit.display());
    let scripts = root.join(deb["maintainer-scripts"].as_str().unwrap());
    for name in ["postinst", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = scripts.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        assert_eq!(text.matches("#DEBHELPER#").count(), 1, "{name}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} not executable");
    }
}
