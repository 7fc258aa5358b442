//! `modelgate check` and `modelgate version`.

mod common;
use common::TempDir;
use std::process::Command;

fn modelgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints_the_version() {
    let (code, out, _) = modelgate(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("modelgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn shipped_configs_check_clean() {
    for file in ["config/modelgate.toml", "config/example.toml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let (code, out, err) = modelgate(&["check", "--config", &path]);
        assert_eq!(code, 0, "{file}: {out}{err}");
        assert!(out.contains("ok"), "{out}");
    }
}

#[test]
fn check_lists_every_error_with_its_field_path() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[services]]
name = "m"
provider = "mock"
[[services]]
name = "x"
provider = "nonsense"

[[model_apis]]
name = "a"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "m" } }

[[model_apis]]
name = "b"
scenario = "text"
protocol = "openai"
domains = ["b.example.com"]
service = { mode = "by_model", rules = [{ pattern = "gpt*", service = "m" }, { pattern = "", service = "m" }] }

[[model_apis]]
name = "c"
scenario = "video"
protocol = "openai"
domains = ["c.example.com"]
service = { mode = "single", target = { service = "ghost" } }
"#,
    )
    .unwrap();
    let (code, _, err) = modelgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    for want in [
        "services[1].provider: unknown provider \"nonsense\"",
        "model_apis[1].service.rules[1].pattern: must not be empty",
        "model_apis[2].protocol: \"openai\" is not offered by scenario video",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Syntax errors name the file and line.
    std::fs::write(&path, "[[services]\nname=").unwrap();
    let (code, _, err) = modelgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml") && err.contains("line"), "{err}");
}
