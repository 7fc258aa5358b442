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
    // The example names its secrets as `env:` references: clean without
    // them only with `--skip-secrets` (the default config has none).
    for (file, args) in [
        ("config/modelgate.toml", &[][..]),
        ("config/modelgate.toml", &["--skip-secrets"][..]),
        ("config/example.toml", &["--skip-secrets"][..]),
    ] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut argv = vec!["check", "--config", &path];
        argv.extend_from_slice(args);
        let (code, out, err) = modelgate(&argv);
        assert_eq!(code, 0, "{file}: {out}{err}");
        assert!(out.contains("ok"), "{out}");
    }
    let path = format!("{}/config/example.toml", env!("CARGO_MANIFEST_DIR"));
    let (code, _, err) = modelgate(&["check", "--config", &path]);
    if std::env::var_os("MODELGATE_ADMIN_TOKEN").is_none() {
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("admin.token: environment variable MODELGATE_ADMIN_TOKEN"),
            "{err}"
        );
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

/// #7 (issue 17): every secret `serve` cannot resolve fails `check` (exit
/// 1, each with its field path) and keeps `serve` from starting; with
/// `--skip-secrets` (CI without the secrets) `check` passes.
#[test]
fn check_fails_on_every_secret_serve_would_refuse() {
    let dir = TempDir::new();
    let path = dir.0.join("secrets.toml");
    let missing = dir.0.join("no-such-secret");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = ["127.0.0.1:0"]
[admin]
listen = "127.0.0.1:0"
token = "env:MODELGATE_TEST_UNSET_ADMIN_TOKEN"
[[admin.tokens]]
token = "file:{missing}"
resource_groups = ["team-a"]
[store]
path = "{store}"

[[services]]
name = "a"
provider = "openai_compatible"
base_url = "http://127.0.0.1:9"
api_keys = ["env:MODELGATE_TEST_UNSET_KEY"]
headers = {{ x-api-secret = "env:MODELGATE_TEST_UNSET_HEADER" }}
[[services]]
name = "b"
provider = "openai_compatible"
base_url = "http://127.0.0.1:9"
api_keys = ["sk-literal-0123456789", "file:{missing}"]

[[consumers]]
name = "c"
keys = ["env:MODELGATE_TEST_UNSET_CONSUMER_KEY"]

[[model_apis]]
name = "m"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "a" }} }}
"#,
            missing = missing.display(),
            store = dir.0.join("state.json").display(),
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = modelgate(&["check", "--config", p]);
    assert_eq!(code, 1, "check passed a config serve refuses: {out}{err}");
    let want = [
        "admin.token: environment variable MODELGATE_TEST_UNSET_ADMIN_TOKEN is not set",
        "admin.tokens[0].token: cannot read secret file",
        "services[0].api_keys[0]: environment variable MODELGATE_TEST_UNSET_KEY is not set",
        "services[0].headers.x-api-secret: environment variable MODELGATE_TEST_UNSET_HEADER is not set",
        "services[1].api_keys[1]: cannot read secret file",
        "consumers[0].keys[0]: environment variable MODELGATE_TEST_UNSET_CONSUMER_KEY is not set",
    ];
    for w in want {
        let line = err.lines().find(|l| l.starts_with(w));
        assert!(line.is_some(), "missing {w:?} in:\n{err}");
    }
    assert!(
        !err.lines().any(|l| l.starts_with("warning:")),
        "a refused secret is an error, not also a warning:\n{err}"
    );
    assert!(err.contains("6 error(s)"), "{err}");
    // Without the secrets (CI): the rest is checked, the references not.
    let (code, out, err) = modelgate(&["check", "--config", p, "--skip-secrets"]);
    assert_eq!(code, 0, "{out}{err}");
    // `serve` refuses the same config, naming the same fields.
    let (code, _, err) = modelgate(&["serve", "--config", p]);
    assert_eq!(code, 1, "{err}");
    for w in want {
        assert!(err.contains(w), "serve: missing {w:?} in:\n{err}");
    }
    // Resolvable, they pass; an empty admin token is refused.
    std::fs::write(&missing, "from-a-file\n").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("env:MODELGATE_TEST_UNSET_ADMIN_TOKEN", "")
        .replace("env:MODELGATE_TEST_UNSET_KEY", "sk-literal-aaaaaaaaaaaa")
        .replace("env:MODELGATE_TEST_UNSET_HEADER", "literal")
        .replace("env:MODELGATE_TEST_UNSET_CONSUMER_KEY", "ck-literal");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = modelgate(&["check", "--config", p]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admin.token: must not be empty"), "{err}");
    assert!(err.contains("1 error(s)"), "{err}");
}
