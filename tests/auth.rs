//! Consumers and keys: 401/403 in each protocol's shape, the three header
//! forms, keys never forwarded, consumers that appear on reload.

mod common;
use common::*;

const KEY_A: &str = "mg-test-team-a-0123456789";
const KEY_B: &str = "mg-test-team-b-9876543210";
const KEY_LATER: &str = "mg-test-later-5555";

fn config(upstream: &str, later: bool) -> String {
    let later = if later {
        format!("[[consumers]]\nname = \"later\"\nkeys = [\"{KEY_LATER}\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{upstream}"
api_keys = ["sk-upstream-service-key"]

[[services]]
name = "claude"
provider = "anthropic"
base_url = "{upstream}"
api_keys = ["sk-ant-service-key"]

[[consumers]]
name = "team-a"
keys = ["{KEY_A}"]

[[consumers]]
name = "team-b"
key_hashes = [{{ id = "k1", sha256 = "{hash_b}" }}]

{later}

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["chat.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
auth = {{ enabled = true, consumers = ["team-a", "later"] }}

[[model_apis]]
name = "msgs"
scenario = "text"
protocol = "anthropic"
domains = ["msgs.example.com"]
service = {{ mode = "single", target = {{ service = "claude" }} }}
auth = {{ enabled = true, consumers = ["team-a"] }}

[[model_apis]]
name = "open"
scenario = "text"
protocol = "openai"
domains = ["open.example.com"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        hash_b = modelgate::auth::key_hash_hex(KEY_B),
    )
}

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const MSGS: &[u8] = br#"{"model":"m","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#;

fn chat(g: &Gateway, host: &str, key: Option<(&str, &str)>) -> Response {
    let mut headers = vec![("host", host), ("content-type", "application/json")];
    headers.extend(key);
    request(g.addr, "POST", "/v1/chat/completions", &headers, CHAT)
}

fn msgs(g: &Gateway, key: Option<(&str, &str)>) -> Response {
    let mut headers = vec![("host", "msgs.example.com")];
    headers.extend(key);
    request(g.addr, "POST", "/v1/messages", &headers, MSGS)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn missing_and_unknown_keys_are_401_and_unlisted_consumers_403_in_protocol_shapes() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), false));

    let b = bearer("mg-nobody");
    for key in [
        None,
        Some(("authorization", b.as_str())),
        Some(("x-api-key", "wrong")),
    ] {
        let r = chat(&g, "chat.example.com", key);
        assert_eq!(r.status, 401, "{key:?}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());

        let r = msgs(&g, key);
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
    }
    // A Basic credential is not a key.
    let r = chat(
        &g,
        "chat.example.com",
        Some(("authorization", &format!("Basic {KEY_A}"))),
    );
    assert_eq!(r.status, 401);

    // team-b exists (an admin-made key, stored as a hash) but is not listed.
    let r = chat(&g, "chat.example.com", Some(("api-key", KEY_B)));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "permission_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("team-b"));
    let r = msgs(&g, Some(("x-api-key", KEY_B)));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["type"], "permission_error");

    assert!(up.requests().is_empty(), "a refused request was forwarded");
}

#[test]
fn keys_are_accepted_in_three_headers_and_never_forwarded() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), false));
    let b = bearer(KEY_A);
    let forms = [
        ("authorization", b.as_str()),
        ("x-api-key", KEY_A),
        ("api-key", KEY_A),
    ];
    for key in forms {
        let r = chat(&g, "chat.example.com", Some(key));
        assert_eq!(r.status, 200, "{key:?}: {}", r.text());
        let r = msgs(&g, Some(key));
        assert_eq!(r.status, 200, "{key:?}: {}", r.text());
    }
    // A Model API without auth serves anyone, keys or not.
    assert_eq!(chat(&g, "open.example.com", None).status, 200);
    assert_eq!(
        chat(&g, "open.example.com", Some(("x-api-key", KEY_B))).status,
        200
    );

    let seen = up.requests();
    assert_eq!(seen.len(), 8);
    for req in &seen {
        let headers = req["headers"].as_array().unwrap();
        for h in headers {
            let value = h[1].as_str().unwrap();
            assert!(
                !value.contains(KEY_A) && !value.contains(KEY_B),
                "consumer key forwarded: {h}"
            );
        }
        let header = |n: &str| {
            headers
                .iter()
                .find(|h| h[0] == n)
                .map(|h| h[1].as_str().unwrap().to_string())
        };
        // The service's own key replaces the consumer's.
        if req["path"].as_str().unwrap().ends_with("/messages") {
            assert_eq!(header("x-api-key").as_deref(), Some("sk-ant-service-key"));
            assert_eq!(header("authorization"), None);
        } else {
            assert_eq!(
                header("authorization").as_deref(),
                Some("Bearer sk-upstream-service-key")
            );
            assert_eq!(header("x-api-key"), None);
            assert_eq!(header("api-key"), None);
        }
    }
}

#[test]
fn debug_marker_must_be_the_process_secret() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), false));
    let r = chat(
        &g,
        "chat.example.com",
        Some(("x-modelgate-debug", "guessed-marker")),
    );
    assert_eq!(r.status, 401);
    // With a valid key the marker header is still never forwarded.
    let b = bearer(KEY_A);
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "chat.example.com"),
            ("authorization", &b),
            ("x-modelgate-debug", "guessed-marker"),
        ],
        CHAT,
    );
    assert_eq!(r.status, 200);
    let seen = up.requests();
    assert!(seen[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h[0] != "x-modelgate-debug"));
}

#[test]
fn a_listed_consumer_created_later_is_admitted_after_reload() {
    let up = MockLlm::start("up");
    let g = Gateway::start(&config(&up.url(), false));
    let b = bearer(KEY_LATER);
    let key = Some(("authorization", b.as_str()));
    assert_eq!(chat(&g, "chat.example.com", key).status, 401);
    // `check` warns about the listed consumer that does not exist yet.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", g.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model_apis[0].auth.consumers[1]") && err.contains("\"later\" does not exist"),
        "{err}"
    );

    std::fs::write(
        &g.config_path,
        format!("{}\n{}", server_section(2), config(&up.url(), true)),
    )
    .unwrap();
    g.signal("HUP");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let r = chat(&g, "chat.example.com", key);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 401);
        assert!(std::time::Instant::now() < deadline, "reload not applied");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Not listed on the Anthropic API.
    assert_eq!(msgs(&g, key).status, 403);
}

#[test]
fn a_consumer_made_through_the_admin_api_authenticates_with_its_key() {
    const ROOT: &str = "root-admin-token";
    let up = MockLlm::start("up");
    let dir = TempDir::new();
    let store = dir.0.join("state.json");
    let g = Gateway::start_raw(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ROOT}\"\n\
         [store]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n{}\n\
         [[model_apis]]\nname = \"made-chat\"\nscenario = \"text\"\nprotocol = \"openai\"\n\
         domains = [\"made.example.com\"]\n\
         service = {{ mode = \"single\", target = {{ service = \"up\" }} }}\n\
         auth = {{ enabled = true, consumers = [\"made\"] }}\n",
        store.display(),
        config(&up.url(), false),
    ));
    assert_eq!(chat(&g, "made.example.com", None).status, 401);

    let admin = format!("Bearer {ROOT}");
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/consumers",
        &[
            ("authorization", admin.as_str()),
            ("content-type", "application/json"),
        ],
        br#"{"name":"made"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["keys"][0]["key"].as_str().unwrap().to_string();

    // The store keeps only the key's hash; the data plane takes the key.
    let b = bearer(&key);
    let r = chat(&g, "made.example.com", Some(("authorization", &b)));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = chat(&g, "made.example.com", Some(("x-api-key", &key)));
    assert_eq!(r.status, 200, "{}", r.text());
    // Another consumer's key is known but not listed; a near miss is unknown.
    let a = bearer(KEY_A);
    assert_eq!(
        chat(&g, "made.example.com", Some(("authorization", &a))).status,
        403
    );
    let wrong = bearer(&format!("{key}0"));
    assert_eq!(
        chat(&g, "made.example.com", Some(("authorization", &wrong))).status,
        401
    );
    // The upstream never sees the consumer's key.
    let seen = serde_json::Value::from(up.requests()).to_string();
    assert!(!seen.contains(&key), "consumer key forwarded: {seen}");
}
