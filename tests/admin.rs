//! The admin API (PRODUCT.md §4): every endpoint and error code, scoped
//! tokens, masking, consumer keys, the store across restarts and `kill -9`,
//! changes applied live while requests and streams are in flight, and the
//! debug endpoint through the data plane.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT: &str = "root-secret-token";
const TEAM_A: &str = "team-a-secret-token";

/// A config with an admin token, a team-a token, the store at `store`,
/// and `body` (file resources).
fn config(store: &Path, token: bool, body: &str) -> String {
    let tokens = if token {
        format!(
            "token = \"{ROOT}\"\n[[admin.tokens]]\ntoken = \"{TEAM_A}\"\nresource_groups = [\"team-a\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\ndrain_timeout_ms = 5000\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{tokens}\
         [store]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n{body}",
        store.display()
    )
}

/// The file's own resources: one service and one Model API.
const FILE_RESOURCES: &str = r#"
[[services]]
name = "file-mock"
provider = "mock"
[[model_apis]]
name = "file-chat"
scenario = "text"
protocol = "openai"
domains = ["file.example.com"]
service = { mode = "single", target = { service = "file-mock" } }
"#;

struct Admin {
    addr: std::net::SocketAddr,
    token: Option<String>,
}

impl Admin {
    fn of(g: &Gateway, token: Option<&str>) -> Admin {
        Admin {
            addr: g.admin,
            token: token.map(str::to_string),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, &bytes)
    }

    fn raw(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        request(self.addr, method, path, &headers, body)
    }

    fn get(&self, path: &str) -> Response {
        self.call("GET", &format!("/admin/v1{path}"), None)
    }
    fn post(&self, path: &str, body: Value) -> Response {
        self.call("POST", &format!("/admin/v1{path}"), Some(&body))
    }
    fn put(&self, path: &str, body: Value) -> Response {
        self.call("PUT", &format!("/admin/v1{path}"), Some(&body))
    }
    fn delete(&self, path: &str) -> Response {
        self.call("DELETE", &format!("/admin/v1{path}"), None)
    }
}

/// Asserts status and error code; returns the error object.
fn expect_error(r: &Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let e = r.json()["error"].clone();
    assert_eq!(e["code"], code, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    e
}

fn remote_service(name: &str, up: &MockLlm, group: &str) -> Value {
    json!({"name": name, "provider": "openai_compatible", "base_url": up.url(),
           "api_keys": ["sk-live-0123456789abcdef"], "resource_group": group})
}

fn chat_api(name: &str, domain: &str, service: &str, group: &str) -> Value {
    json!({"name": name, "scenario": "text", "protocol": "openai", "domains": [domain],
           "service": {"mode": "single", "target": {"service": service, "model": null}},
           "resource_group": group})
}

fn chat(g: &Gateway, host: &str, model: &str) -> Response {
    request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("host", host), ("content-type", "application/json")],
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
            .as_bytes(),
    )
}

fn start(token: bool, body: &str) -> (Gateway, TempDir, PathBuf) {
    let dir = TempDir::new();
    let store = dir.0.join("state.json");
    let g = Gateway::start_raw(&config(&store, token, body));
    (g, dir, store)
}

#[test]
fn services_crud_masks_keys_and_refuses_deleting_one_in_use() {
    let up = MockLlm::start("up");
    let (g, _dir, _) = start(true, FILE_RESOURCES);
    let a = Admin::of(&g, Some(ROOT));

    let r = a.post("/services", remote_service("up", &up, "default"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["api_keys"][0], "sk-...cdef");
    let r = a.get("/services/up");
    assert_eq!(r.status, 200);
    let mut svc = r.json();
    assert_eq!(svc["api_keys"], json!(["sk-...cdef"]));
    assert_eq!(svc["managed_by_config"], false);
    assert!(!r.text().contains("0123456789"), "key leaked: {}", r.text());

    let list = a.get("/services").json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["file-mock", "up"]);
    assert_eq!(a.get("/services?resource_group=none").json(), json!([]));

    // PUT back what GET showed, with a new header: the masked key stands for the real one.
    svc["headers"] = json!({"x-team": "blue"});
    let r = a.put("/services/up", svc.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        a.post(
            "/model-apis",
            chat_api("c", "c.example.com", "up", "default")
        )
        .status,
        201
    );
    up.clear();
    assert_eq!(chat(&g, "c.example.com", "m").status, 200);
    let seen = &up.requests()[0];
    let header = |n: &str| {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == n)
            .map(|h| h[1].clone())
    };
    assert_eq!(
        header("authorization"),
        Some(json!("Bearer sk-live-0123456789abcdef"))
    );
    assert_eq!(header("x-team"), Some(json!("blue")));

    // Errors.
    expect_error(
        &a.post("/services", remote_service("up", &up, "default")),
        409,
        "already_exists",
    );
    expect_error(&a.get("/services/nope"), 404, "not_found");
    expect_error(
        &a.put(
            "/services/nope",
            json!({"name": "nope", "provider": "mock"}),
        ),
        404,
        "not_found",
    );
    let e = expect_error(
        &a.put("/services/up", json!({"name": "other", "provider": "mock"})),
        400,
        "invalid_field",
    );
    assert_eq!(e["field"], "name");
    let e = expect_error(
        &a.post("/services", json!({"name": "bad", "provider": "nope"})),
        400,
        "invalid_field",
    );
    assert_eq!(e["field"], "provider");
    let e = expect_error(
        &a.post(
            "/services",
            json!({"name": "bad", "provider": "openai_compatible", "base_url": "ftp://x"}),
        ),
        400,
        "invalid_field",
    );
    assert_eq!(e["field"], "base_url");
    let e = expect_error(&a.delete("/services/up"), 409, "in_use");
    assert!(e["message"].as_str().unwrap().contains("\"c\""), "{e}");
    assert_eq!(a.delete("/model-apis/c?confirm=c").status, 204);
    assert_eq!(a.delete("/services/up").status, 204);
    expect_error(&a.delete("/services/up"), 404, "not_found");
}

#[test]
fn model_apis_apply_at_once_show_routes_and_delete_with_the_typed_name() {
    let up = MockLlm::start("up");
    let (g, _dir, _) = start(true, FILE_RESOURCES);
    let a = Admin::of(&g, Some(ROOT));
    assert_eq!(
        a.post("/services", remote_service("up", &up, "default"))
            .status,
        201
    );

    assert_eq!(chat(&g, "new.example.com", "m").status, 404);
    let mut api = chat_api("new", "new.example.com", "up", "default");
    api["base_path"] = json!("/team");
    let r = a.post("/model-apis", api.clone());
    assert_eq!(r.status, 201, "{}", r.text());
    // Applied before the answer: the very next request is routed.
    let r = request(
        g.addr,
        "POST",
        "/team/v1/chat/completions",
        &[("host", "new.example.com")],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let r = a.get("/model-apis/new/routes");
    assert_eq!(r.status, 200);
    let routes = r.json()["routes"].clone();
    assert_eq!(routes[0]["name"], "create-chat-completion");
    assert_eq!(routes[0]["path"], "/team/v1/chat/completions");
    assert_eq!(routes[0]["methods"], json!(["POST"]));
    assert_eq!(routes[1]["path"], "/team/v1/completions");
    expect_error(&a.get("/model-apis/nope/routes"), 404, "not_found");

    // PUT: change the model; applied at once.
    api["service"]["target"]["model"] = json!("rewritten");
    let r = a.put("/model-apis/new", api.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        g.addr,
        "POST",
        "/team/v1/chat/completions",
        &[("host", "new.example.com")],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.json()["model"], "rewritten");

    let list = a.get("/model-apis").json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(a.get("/model-apis/new").json()["base_path"], "/team");

    let e = expect_error(&a.delete("/model-apis/new"), 400, "invalid_field");
    assert_eq!(e["field"], "confirm");
    expect_error(
        &a.delete("/model-apis/new?confirm=wrong"),
        400,
        "invalid_field",
    );
    expect_error(&a.delete("/model-apis/nope?confirm=nope"), 404, "not_found");
    assert_eq!(a.delete("/model-apis/new?confirm=new").status, 204);
    let r = request(
        g.addr,
        "POST",
        "/team/v1/chat/completions",
        &[("host", "new.example.com")],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn validation_names_fields_and_leaves_the_store_untouched() {
    let (g, _dir, store) = start(true, FILE_RESOURCES);
    let a = Admin::of(&g, Some(ROOT));
    assert_eq!(
        a.post("/services", json!({"name": "m", "provider": "mock"}))
            .status,
        201
    );
    assert_eq!(
        a.post(
            "/model-apis",
            chat_api("held", "h.example.com", "m", "default")
        )
        .status,
        201
    );
    let before = std::fs::read(&store).unwrap();

    let field = |body: Value| {
        let r = a.post("/model-apis", body);
        expect_error(&r, 400, "invalid_field")["field"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["service"] = json!({"mode": "by_model", "rules": [{"pattern": "", "service": "m"}]});
    assert_eq!(field(api), "service.rules[0].pattern");
    assert_eq!(
        field(chat_api("x", "x.example.com", "ghost", "default")),
        "service.target.service"
    );
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["protocol"] = json!("dashscope");
    assert_eq!(field(api), "protocol");
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["service"] = json!({"mode": "by_weight", "targets": [{"service": "m", "weight": 0}]});
    assert_eq!(field(api), "service.targets[0].weight");
    assert_eq!(
        field(chat_api("bad name", "x.example.com", "m", "default")),
        "name"
    );
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["base_path"] = json!("nope");
    assert_eq!(field(api), "base_path");
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["first_packet_timeout_ms"] = json!("soon");
    assert_eq!(field(api), "first_packet_timeout_ms");
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api["colour"] = json!("red");
    assert_eq!(field(api), "colour");
    let mut api = chat_api("x", "x.example.com", "m", "default");
    api.as_object_mut().unwrap().remove("domains");
    assert_eq!(field(api), "domains");

    // (domain, base path) already held: 409 naming the holder.
    let r = a.post(
        "/model-apis",
        chat_api("x", "H.example.com", "m", "default"),
    );
    let e = expect_error(&r, 409, "conflict");
    assert_eq!(e["field"], "domains[0]");
    assert!(e["message"].as_str().unwrap().contains("\"held\""), "{e}");
    // ... also against a Model API of the config file.
    let r = a.post(
        "/model-apis",
        chat_api("y", "file.example.com", "m", "default"),
    );
    assert!(expect_error(&r, 409, "conflict")["message"]
        .as_str()
        .unwrap()
        .contains("file-chat"));

    // Malformed bodies.
    expect_error(
        &a.raw("POST", "/admin/v1/model-apis", b"{not json"),
        400,
        "invalid_json",
    );
    expect_error(
        &a.raw("POST", "/admin/v1/model-apis", b"[1,2]"),
        400,
        "invalid_json",
    );
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 << 20));
    expect_error(
        &a.raw("POST", "/admin/v1/services", huge.as_bytes()),
        400,
        "body_too_large",
    );
    expect_error(&a.get("/nothing-here"), 404, "not_found");

    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "store changed by rejected input"
    );
    // `modelgate check` reports the same problem with the same field path.
    let bad = config(
        &store,
        false,
        r#"
[[services]]
name = "m"
provider = "mock"
[[model_apis]]
name = "x"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "by_model", rules = [{ pattern = "", service = "m" }] }
"#,
    );
    let path = store.with_file_name("check.toml");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_apis[0].service.rules[0].pattern"));
}

#[test]
fn config_file_resources_are_read_only() {
    let (g, _dir, _) = start(true, FILE_RESOURCES);
    let a = Admin::of(&g, Some(ROOT));
    let svc = a.get("/services/file-mock").json();
    assert_eq!(svc["managed_by_config"], true);
    expect_error(
        &a.put(
            "/services/file-mock",
            json!({"name": "file-mock", "provider": "mock"}),
        ),
        409,
        "managed_by_config",
    );
    expect_error(&a.delete("/services/file-mock"), 409, "managed_by_config");
    let api = a.get("/model-apis/file-chat").json();
    assert_eq!(api["managed_by_config"], true);
    expect_error(
        &a.put("/model-apis/file-chat", api),
        409,
        "managed_by_config",
    );
    expect_error(
        &a.delete("/model-apis/file-chat?confirm=file-chat"),
        409,
        "managed_by_config",
    );
    expect_error(
        &a.post(
            "/services",
            json!({"name": "file-mock", "provider": "mock"}),
        ),
        409,
        "already_exists",
    );
    // A store API may use a file service; the file service then cannot go.
    assert_eq!(
        a.post(
            "/model-apis",
            chat_api("s", "s.example.com", "file-mock", "default")
        )
        .status,
        201
    );
    assert_eq!(chat(&g, "s.example.com", "m").status, 200);
}

#[test]
fn consumer_keys_are_shown_once_and_stored_as_hashes() {
    let (g, _dir, store) = start(true, "");
    let a = Admin::of(&g, Some(ROOT));
    let r = a.post(
        "/consumers",
        json!({"name": "team-a", "limits": {"requests_per_minute": 600}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let c = r.json();
    assert_eq!(c["name"], "team-a");
    assert_eq!(c["keys"][0]["id"], "k1");
    let key = c["keys"][0]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mg-") && key.len() == 3 + 64, "{key}");

    let shown = a.get("/consumers/team-a");
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["keys"], json!([{"id": "k1"}]));
    assert_eq!(shown.json()["limits"]["requests_per_minute"], 600);
    assert!(!a.get("/consumers").text().contains(&key));
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(!text.contains(&key), "key stored in clear");
    let hash = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(key.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(text.contains(&hash), "hash not stored: {text}");

    let r = a.post("/consumers/team-a/keys", json!({}));
    assert_eq!(r.status, 201);
    let k2 = r.json();
    assert_eq!(k2["id"], "k2");
    assert_ne!(k2["key"].as_str().unwrap(), key);
    // PUT of what GET shows keeps the keys.
    let mut body = a.get("/consumers/team-a").json();
    body["enabled"] = json!(false);
    let r = a.put("/consumers/team-a", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["keys"], json!([{"id": "k1"}, {"id": "k2"}]));
    assert_eq!(a.delete("/consumers/team-a/keys/k1").status, 204);
    expect_error(&a.delete("/consumers/team-a/keys/k1"), 404, "not_found");
    assert_eq!(
        a.get("/consumers/team-a").json()["keys"],
        json!([{"id": "k2"}])
    );
    expect_error(
        &a.post("/consumers", json!({"name": "team-a"})),
        409,
        "already_exists",
    );
    let e = expect_error(
        &a.post("/consumers", json!({"name": "x", "key_hashes": []})),
        400,
        "invalid_field",
    );
    assert_eq!(e["field"], "key_hashes");
    expect_error(&a.post("/consumers/nope/keys", json!({})), 404, "not_found");
    assert_eq!(a.delete("/consumers/team-a").status, 204);
    expect_error(&a.get("/consumers/team-a"), 404, "not_found");
}

#[test]
fn resource_groups_default_always_exists_and_non_empty_ones_stay() {
    let (g, _dir, _) = start(true, "");
    let a = Admin::of(&g, Some(ROOT));
    let groups = a.get("/resource-groups").json();
    let names: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "team-a"],
        "team-a comes from the scoped token"
    );
    assert_eq!(
        a.post(
            "/resource-groups",
            json!({"name": "team-b", "description": "B"})
        )
        .status,
        201
    );
    expect_error(
        &a.post("/resource-groups", json!({"name": "team-b"})),
        409,
        "already_exists",
    );
    expect_error(
        &a.post("/resource-groups", json!({"name": "b b"})),
        400,
        "invalid_field",
    );
    assert_eq!(a.get("/resource-groups/team-b").json()["description"], "B");
    assert_eq!(
        a.post(
            "/services",
            json!({"name": "m", "provider": "mock", "resource_group": "team-b"})
        )
        .status,
        201
    );
    assert_eq!(
        a.get("/resource-groups/team-b").json()["resources"]["services"],
        1
    );
    expect_error(&a.delete("/resource-groups/team-b"), 409, "not_empty");
    expect_error(&a.delete("/resource-groups/default"), 409, "conflict");
    expect_error(&a.delete("/resource-groups/nope"), 404, "not_found");
    expect_error(&a.get("/resource-groups/nope"), 404, "not_found");
    assert_eq!(a.delete("/services/m").status, 204);
    assert_eq!(a.delete("/resource-groups/team-b").status, 204);
    expect_error(&a.get("/resource-groups/team-b"), 404, "not_found");
}

#[test]
fn tokens_scope_what_is_seen_and_changed() {
    let (g, _dir, _) = start(true, FILE_RESOURCES);
    let root = Admin::of(&g, Some(ROOT));
    let team = Admin::of(&g, Some(TEAM_A));
    expect_error(&Admin::of(&g, None).get("/services"), 401, "unauthorized");
    expect_error(
        &Admin::of(&g, Some("wrong")).get("/services"),
        401,
        "unauthorized",
    );
    // Health, readiness and the console need no token.
    assert_eq!(request(g.admin, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(g.admin, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(request(g.admin, "GET", "/console/", &[], b"").status, 200);

    assert_eq!(
        team.post(
            "/services",
            json!({"name": "a-mock", "provider": "mock", "resource_group": "team-a"})
        )
        .status,
        201
    );
    expect_error(
        &team.post("/services", json!({"name": "d-mock", "provider": "mock"})),
        403,
        "forbidden",
    );
    let names = |r: Response| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(team.get("/services")), ["a-mock"]);
    assert_eq!(names(root.get("/services")), ["file-mock", "a-mock"]);
    // Another group's resources answer as if they did not exist.
    expect_error(&team.get("/services/file-mock"), 404, "not_found");
    expect_error(&team.get("/model-apis/file-chat"), 404, "not_found");
    assert_eq!(names(team.get("/model-apis")), Vec::<String>::new());
    // A team's Model API may not route to another group's service: to the
    // team, it is an unknown service.
    let e = expect_error(
        &team.post(
            "/model-apis",
            chat_api("a", "a.example.com", "file-mock", "team-a"),
        ),
        400,
        "invalid_field",
    );
    assert_eq!(e["field"], "service.target.service");
    assert_eq!(
        team.post(
            "/model-apis",
            chat_api("a", "a.example.com", "a-mock", "team-a")
        )
        .status,
        201
    );
    assert_eq!(chat(&g, "a.example.com", "m").status, 200);
    // Moving a resource out of the token's groups is refused too.
    expect_error(
        &team.put(
            "/model-apis/a",
            chat_api("a", "a.example.com", "a-mock", "default"),
        ),
        403,
        "forbidden",
    );
    let r = team.post("/model-apis/a/debug", json!({"model": "m", "messages": []}));
    assert_eq!(r.status, 200, "{}", r.text());
    expect_error(
        &team.post("/model-apis/file-chat/debug", json!({"model": "m"})),
        404,
        "not_found",
    );
    assert_eq!(names(team.get("/resource-groups")), ["team-a"]);
    expect_error(&team.get("/resource-groups/default"), 404, "not_found");
    expect_error(
        &team.post("/resource-groups", json!({"name": "team-z"})),
        403,
        "forbidden",
    );
    expect_error(&team.delete("/services/file-mock"), 404, "not_found");
    assert_eq!(
        team.post(
            "/consumers",
            json!({"name": "ca", "resource_group": "team-a"})
        )
        .status,
        201
    );
    expect_error(
        &team.post("/consumers", json!({"name": "cd"})),
        403,
        "forbidden",
    );
    assert_eq!(team.get("/catalog").status, 200);
    assert_eq!(team.delete("/model-apis/a?confirm=a").status, 204);
}

#[test]
fn without_a_token_loopback_clients_have_full_access() {
    let (g, _dir, _) = start(false, "");
    let a = Admin::of(&g, None);
    assert_eq!(
        a.post("/services", json!({"name": "m", "provider": "mock"}))
            .status,
        201
    );
    assert_eq!(a.get("/services").json().as_array().unwrap().len(), 1);
    // A token that is not configured is refused even from loopback.
    expect_error(
        &Admin::of(&g, Some("guess")).get("/services"),
        401,
        "unauthorized",
    );
}

#[test]
fn catalog_lists_scenarios_routes_and_provider_kinds() {
    let (g, _dir, _) = start(true, "");
    let c = Admin::of(&g, Some(ROOT)).get("/catalog").json();
    let text = &c["scenarios"].as_array().unwrap()[0];
    assert_eq!(text["name"], "text");
    assert_eq!(text["protocols"][1]["name"], "anthropic");
    assert_eq!(text["protocols"][1]["routes"][0]["path"], "/v1/messages");
    let scenarios: Vec<&str> = c["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        scenarios,
        [
            "text",
            "image",
            "video",
            "audio",
            "embedding",
            "rerank",
            "other"
        ]
    );
    let kinds = c["provider_kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 12);
    let anthropic = kinds.iter().find(|k| k["kind"] == "anthropic").unwrap();
    assert_eq!(anthropic["protocols"], json!(["anthropic"]));
    assert_eq!(anthropic["protocols_by_translation"], json!(["openai"]));
}

#[test]
fn the_store_survives_restarts_and_reloads_keep_it() {
    let up = MockLlm::start("up");
    let dir = TempDir::new();
    let store = dir.0.join("nested/state.json");
    let cfg = config(&store, true, FILE_RESOURCES);
    {
        let g = Gateway::start_raw(&cfg);
        let a = Admin::of(&g, Some(ROOT));
        assert_eq!(
            a.post("/services", remote_service("up", &up, "default"))
                .status,
            201
        );
        assert_eq!(
            a.post(
                "/model-apis",
                chat_api("kept", "kept.example.com", "up", "default")
            )
            .status,
            201
        );
        assert_eq!(a.post("/consumers", json!({"name": "c"})).status, 201);
        assert_eq!(
            a.post("/resource-groups", json!({"name": "g1"})).status,
            201
        );
        // SIGHUP re-reads the file and keeps the store's resources.
        let more = FILE_RESOURCES
            .replace("file-chat", "file-chat-2")
            .replace("file.example", "file2.example");
        let more = more.split("[[model_apis]]").nth(1).unwrap();
        std::fs::write(&g.config_path, format!("{cfg}\n[[model_apis]]{more}")).unwrap();
        g.signal("HUP");
        let deadline = Instant::now() + TIMEOUT;
        while chat(&g, "file2.example.com", "m").status != 200 {
            assert!(
                Instant::now() < deadline,
                "reload not applied: {}",
                g.proc.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(chat(&g, "kept.example.com", "m").status, 200);
        assert_eq!(chat(&g, "file.example.com", "m").status, 200);
        assert_eq!(a.get("/model-apis/kept").json()["managed_by_config"], false);
        assert_eq!(
            a.get("/model-apis/file-chat-2").json()["managed_by_config"],
            true
        );
    } // dropped: SIGKILL
    let g = Gateway::start_raw(&cfg);
    let a = Admin::of(&g, Some(ROOT));
    assert_eq!(
        a.get("/services/up").json()["api_keys"],
        json!(["sk-...cdef"])
    );
    assert_eq!(a.get("/model-apis/kept").status, 200);
    assert_eq!(a.get("/consumers/c").json()["keys"], json!([{"id": "k1"}]));
    assert_eq!(a.get("/resource-groups/g1").status, 200);
    assert_eq!(chat(&g, "kept.example.com", "m").status, 200);
}

#[test]
fn changes_apply_live_without_failing_streams_or_requests_in_flight() {
    let up = MockLlm::start("up");
    let (g, _dir, _) = start(true, "");
    let a = Admin::of(&g, Some(ROOT));
    assert_eq!(
        a.post("/services", remote_service("up", &up, "default"))
            .status,
        201
    );
    let mut api = chat_api("live", "*", "up", "default");
    api["service"]["target"]["model"] = json!("v0");
    assert_eq!(a.post("/model-apis", api.clone()).status, 201);

    // A slow stream in flight across every change below.
    let mut s = connect(g.addr);
    s.write_all(&raw_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "100")],
        br#"{"model":"m","stream":true,"max_tokens":15,"messages":[]}"#,
    ))
    .unwrap();
    let mut stream = BufReader::new(s);
    assert_eq!(read_head_only(&mut stream).unwrap().status, 200);

    // A load of requests on two threads, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let addr = g.addr;
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let r = try_request(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        &[],
                        br#"{"model":"m","messages":[]}"#,
                    );
                    match r {
                        Ok(r) if r.status == 200 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", r.status, r.text()))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    for v in 1..=10 {
        api["service"]["target"]["model"] = json!(format!("v{v}"));
        assert_eq!(a.put("/model-apis/live", api.clone()).status, 200);
        // Every worker sees the change as soon as the answer arrived.
        for _ in 0..4 {
            let r = request(
                g.addr,
                "POST",
                "/v1/chat/completions",
                &[],
                br#"{"model":"m","messages":[]}"#,
            );
            assert_eq!(r.json()["model"], format!("v{v}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    assert!(done.load(Ordering::Relaxed) > 10);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap_or(0);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("[DONE]"), "stream cut: {text}");
    assert!(
        text.contains("\"model\":\"v0\""),
        "stream changed model mid-way: {text}"
    );
}

#[test]
fn debug_sends_through_the_data_plane_with_fallback_and_streams() {
    let up = MockLlm::start("up");
    let (g, _dir, _) = start(true, "");
    let a = Admin::of(&g, Some(ROOT));
    assert_eq!(
        a.post("/services", remote_service("up", &up, "default"))
            .status,
        201
    );
    let (_held, closed) = refusing_addr();
    assert_eq!(
        a.post(
            "/services",
            json!({"name": "down", "provider": "openai_compatible",
        "base_url": format!("http://{closed}"), "connect_timeout_ms": 500})
        )
        .status,
        201
    );
    let mut api = chat_api("dbg", "dbg.example.com", "down", "default");
    api["fallback"] = json!({"enabled": true, "targets": [{"service": "up", "model": null}]});
    assert_eq!(a.post("/model-apis", api).status, 201);

    up.clear();
    let r = a.post(
        "/model-apis/dbg/debug",
        json!({
        "model": "qwen-max", "messages": [{"role": "user", "content": "hello"}],
        "parameters": {"temperature": 0.2}, "custom_parameters": {"enable_search": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(d["status"], 200);
    assert_eq!(d["service"], "up");
    assert_eq!(d["fallbacks"], 1);
    assert!(d["total_ms"].as_f64().unwrap() >= d["first_packet_ms"].as_f64().unwrap());
    assert_eq!(d["response"]["model"], "qwen-max");
    assert_eq!(d["stream_events"], json!([]));
    let sent: Value = serde_json::from_str(up.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["enable_search"], true);
    // The internal marker never reaches the upstream.
    assert!(!up.requests()[0]["headers"]
        .to_string()
        .contains("x-modelgate-debug"));

    let r = a.post(
        "/model-apis/dbg/debug",
        json!({"model": "m", "stream": true,
        "messages": [], "parameters": {"max_tokens": 4}}),
    );
    let d = r.json();
    assert_eq!(d["status"], 200, "{d}");
    let events = d["stream_events"].as_array().unwrap();
    assert!(events.len() >= 4, "{d}");
    assert!(events.last().unwrap().as_str().unwrap().contains("[DONE]"));
    assert!(!d["response"]["text"].as_str().unwrap().is_empty(), "{d}");

    // Progress as server-sent events for the console.
    let body = json!({"model": "m", "stream": true, "messages": []}).to_string();
    let mut s = connect(g.admin);
    s.write_all(&raw_request(
        "POST",
        "/admin/v1/model-apis/dbg/debug",
        &[
            ("authorization", &format!("Bearer {ROOT}")),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ],
        body.as_bytes(),
    ))
    .unwrap();
    let (resp, _) = read_chunks(&mut BufReader::new(s)).unwrap();
    let text = resp.text();
    assert!(text.starts_with("event: head\n"), "{text}");
    assert!(text.contains("event: event\n"), "{text}");
    assert!(text.contains("event: result\n"), "{text}");

    // A client cannot forge the marker: it is stripped, never trusted.
    up.clear();
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("host", "dbg.example.com"), ("x-modelgate-debug", "forged")],
        br#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.header("x-modelgate-service").is_none());
    assert!(!up.requests()[0]["headers"].to_string().contains("forged"));
    expect_error(
        &a.post("/model-apis/nope/debug", json!({})),
        404,
        "not_found",
    );
}

/// Writes in a loop, `kill -9` at random moments, restarts: every change
/// that was acknowledged is there and the file always loads.
#[test]
fn kill_9_never_loses_an_acknowledged_change() {
    let dir = TempDir::new();
    let store = dir.0.join("state.json");
    let cfg = config(&store, true, "");
    let mut acknowledged: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0..6 {
        if Instant::now() > deadline {
            break;
        }
        let mut g = Gateway::start_raw(&cfg);
        let admin = g.admin;
        let list = Admin::of(&g, Some(ROOT)).get("/services").json();
        let present: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        for name in &acknowledged {
            assert!(
                present.contains(name),
                "round {round}: acknowledged {name} lost; have {present:?}"
            );
        }
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let a = Admin {
                    addr: admin,
                    token: Some(ROOT.into()),
                };
                for i in 0..500 {
                    let name = format!("s{round}-{i}");
                    match std::panic::catch_unwind(|| {
                        a.post("/services", json!({"name": name, "provider": "mock"}))
                    }) {
                        Ok(r) if r.status == 201 => acked.lock().unwrap().push(name),
                        _ => return,
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(fastrand::u64(20..300)));
        g.proc.child.kill().unwrap(); // SIGKILL
        g.proc.child.wait().unwrap();
        let _ = writer.join();
        acknowledged.extend(acked.lock().unwrap().drain(..));
        let text = std::fs::read(&store).unwrap_or_default();
        if !text.is_empty() {
            serde_json::from_slice::<Value>(&text).expect("store file always parses");
        }
    }
    eprintln!(
        "kill -9 rounds: {} acknowledged writes kept",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > 5,
        "too few writes to mean anything: {}",
        acknowledged.len()
    );
    let g = Gateway::start_raw(&cfg);
    let list = Admin::of(&g, Some(ROOT)).get("/services").json();
    assert!(list.as_array().unwrap().len() >= acknowledged.len());
}

#[test]
fn the_openapi_document_is_served_and_every_path_in_it_is_routed() {
    let (g, _dir, _) = start(true, "");
    let r = request(g.admin, "GET", "/admin/v1/openapi.json", &[], b"");
    assert_eq!(r.status, 200, "the document needs no token");
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let a = Admin::of(&g, Some(ROOT));
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 13, "{:?}", paths.keys());
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{name}", "nope").replace("{key_id}", "k9");
            let r = a.call(&method.to_uppercase(), &concrete, Some(&json!({})));
            assert_ne!(r.status, 405, "{method} {path}");
            if r.status == 404 {
                // A 404 about the resource, not an unknown endpoint.
                let m = r.json()["error"]["message"].as_str().unwrap().to_string();
                assert!(!m.starts_with("no admin endpoint"), "{method} {path}: {m}");
            }
        }
    }
}

#[test]
fn wrong_methods_and_bad_queries_answer_in_the_error_shape() {
    let (g, _dir, _) = start(true, "");
    let a = Admin::of(&g, Some(ROOT));
    let r = a.call("PATCH", "/admin/v1/services", Some(&json!({})));
    expect_error(&r, 405, "method_not_allowed");
    assert!(
        r.header("allow").is_some_and(|v| v.contains("GET")),
        "{:?}",
        r.headers
    );
    let r = a.call("GET", "/admin/v1/services/%FF", None);
    expect_error(&r, 400, "invalid_request");
}

#[test]
fn pages_of_other_sites_cannot_drive_the_admin_api() {
    let (g, _dir, store) = start(false, "");
    let body = br#"{"name":"csrf","provider":"mock"}"#;
    // A cross-site form post through the user's browser.
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/services",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
        ],
        body,
    );
    expect_error(&r, 403, "forbidden");
    // DNS rebinding: the page's own name resolved to 127.0.0.1.
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/services",
        &[
            ("host", "evil.example:9090"),
            ("origin", "http://evil.example:9090"),
        ],
        body,
    );
    expect_error(&r, 401, "unauthorized");
    assert!(!store.exists(), "nothing was written");
    // A body that is not sent as JSON is not read (a cross-site form or
    // text/plain post needs no preflight; JSON does).
    let host = g.admin.to_string();
    let origin = format!("http://{host}");
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/services",
        &[
            ("host", host.as_str()),
            ("origin", origin.as_str()),
            ("content-type", "text/plain"),
        ],
        body,
    );
    expect_error(&r, 415, "unsupported_media_type");
    assert!(!store.exists(), "nothing was written");
    // The console's own requests are same-origin, and JSON.
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/services",
        &[
            ("host", host.as_str()),
            ("origin", origin.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
