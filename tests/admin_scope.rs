//! The admin trust boundary (issue 17, docs/security.md): what a token
//! scoped to resource groups may reach, and the admin listener's own
//! surface. One test per defect:
//! - debug stays inside its Model API (#2),
//! - no cross-group takeover of domains (#3),
//! - any configured token is required, loopback included (#4),
//! - nothing of another group leaks through status codes or messages (#8),
//! - bearer scheme, Content-Type and framing of the admin surface (#9).
//!
//! (#7, `check` failing on the secrets `serve` refuses, is in tests/cli.rs.)

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

const ROOT: &str = "root-secret-token";
const TEAM_A: &str = "team-a-secret-token";

/// A config with `admin` (the lines under `[admin]` after `listen`), the
/// store at `store`, log level `level`, and `body` (file resources).
fn config(store: &Path, admin: &str, level: &str, body: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\ndrain_timeout_ms = 5000\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\
         [store]\npath = \"{}\"\n[log]\nlevel = \"{level}\"\n{body}",
        store.display()
    )
}

/// A full token and a token scoped to team-a.
fn both_tokens() -> String {
    format!(
        "token = \"{ROOT}\"\n[[admin.tokens]]\ntoken = \"{TEAM_A}\"\nresource_groups = [\"team-a\"]\n"
    )
}

fn start(admin: &str, level: &str, body: &str) -> (Gateway, TempDir) {
    let dir = TempDir::new();
    let store = dir.0.join("state.json");
    let g = Gateway::start_raw(&config(&store, admin, level, body));
    (g, dir)
}

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
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        request(
            self.addr,
            method,
            &format!("/admin/v1{path}"),
            &headers,
            &bytes,
        )
    }

    fn get(&self, path: &str) -> Response {
        self.call("GET", path, None)
    }
    fn post(&self, path: &str, body: Value) -> Response {
        self.call("POST", path, Some(&body))
    }
    fn put(&self, path: &str, body: Value) -> Response {
        self.call("PUT", path, Some(&body))
    }
    fn delete(&self, path: &str) -> Response {
        self.call("DELETE", path, None)
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

fn chat_api(name: &str, domains: &[&str], service: &str, group: &str) -> Value {
    json!({"name": name, "scenario": "text", "protocol": "openai", "domains": domains,
           "service": {"mode": "single", "target": {"service": service, "model": null}},
           "resource_group": group})
}

fn mock_service(name: &str, group: &str) -> Value {
    json!({"name": name, "provider": "mock", "resource_group": group})
}

/// #4: with only scoped tokens configured, a loopback client without a
/// token gets nothing; `serve` says which mode the admin API is in.
#[test]
fn any_configured_admin_token_is_required_from_loopback_too() {
    let scoped_only =
        format!("[[admin.tokens]]\ntoken = \"{TEAM_A}\"\nresource_groups = [\"team-a\"]\n");
    let (g, _dir) = start(&scoped_only, "info", "");
    expect_error(&Admin::of(&g, None).get("/services"), 401, "unauthorized");
    expect_error(
        &Admin::of(&g, None).post("/services", mock_service("x", "default")),
        401,
        "unauthorized",
    );
    expect_error(
        &Admin::of(&g, Some("guess")).get("/services"),
        401,
        "unauthorized",
    );
    let team = Admin::of(&g, Some(TEAM_A));
    assert_eq!(team.get("/services").status, 200);
    assert_eq!(
        team.post("/services", mock_service("a", "team-a")).status,
        201
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !g
        .proc
        .stderr_text()
        .contains("admin API: a bearer token is required")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "mode not logged: {}",
            g.proc.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // No token of any kind: loopback clients get in, and the log says so.
    let (open, _dir2) = start("", "info", "");
    assert_eq!(Admin::of(&open, None).get("/services").status, 200);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !open
        .proc
        .stderr_text()
        .contains("admin API: no admin token is configured")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "mode not logged: {}",
            open.proc.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// #9: the bearer scheme in any case; JSON bodies only as
/// `application/json` (415 in the admin error shape otherwise); console
/// pages that cannot be framed and run only their own script.
#[test]
fn admin_surface_bearer_content_type_and_framing() {
    let (g, _dir) = start(&both_tokens(), "warn", "");
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let auth = format!("{scheme} {ROOT}");
        let r = request(
            g.admin,
            "GET",
            "/admin/v1/services",
            &[("authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    let auth = format!("Bearer {ROOT}");
    let body = br#"{"name":"svc","provider":"mock"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(c) = content_type {
            headers.push(("content-type", c));
        }
        let r = request(g.admin, "POST", "/admin/v1/services", &headers, body);
        expect_error(&r, 415, "unsupported_media_type");
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{content_type:?}: {:?}",
            r.headers
        );
        let r = request(g.admin, "PUT", "/admin/v1/services/svc", &headers, body);
        expect_error(&r, 415, "unsupported_media_type");
    }
    let r = request(
        g.admin,
        "GET",
        "/admin/v1/services/svc",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 404, "nothing was made: {}", r.text());
    let r = request(
        g.admin,
        "POST",
        "/admin/v1/services",
        &[
            ("authorization", &auth),
            ("content-type", "Application/JSON; charset=utf-8"),
        ],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Endpoints without a body need no Content-Type.
    let r = request(
        g.admin,
        "DELETE",
        "/admin/v1/services/svc",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());

    for path in ["/console/", "/console/app.js", "/console/style.css"] {
        let r = request(g.admin, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        for part in [
            "frame-ancestors 'none'",
            "script-src 'self'",
            "default-src 'self'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {part} missing in {csp:?}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
    }
}

/// The file resources of team-b for #3 and #8: a wildcard and an exact
/// domain, a service and a consumer.
const TEAM_B: &str = r#"
[[services]]
name = "b-mock"
provider = "mock"
resource_group = "team-b"
[[consumers]]
name = "b-client"
resource_group = "team-b"
keys = ["team-b-consumer-key"]
[[model_apis]]
name = "b-wild"
scenario = "text"
protocol = "openai"
domains = ["*.corp.example.com"]
resource_group = "team-b"
service = { mode = "single", target = { service = "b-mock" } }
[[model_apis]]
name = "b-exact"
scenario = "text"
protocol = "openai"
domains = ["api.example.com"]
resource_group = "team-b"
service = { mode = "single", target = { service = "b-mock" } }
"#;

/// Whatever an error says, it names nothing of team-b.
fn names_nothing_of_team_b(r: &Response) {
    let text = r.text();
    for name in [
        "b-wild", "b-exact", "b-mock", "b-client", "b-user", "team-b",
    ] {
        assert!(!text.contains(name), "{name} named in {text}");
    }
}

/// #8: for a scoped token, another group's resources are indistinguishable
/// from ones that do not exist (404, or the 400 an unknown name gets), and
/// no 409 names them.
#[test]
fn another_groups_resources_look_like_nothing_at_all() {
    let (g, _dir) = start(&both_tokens(), "warn", TEAM_B);
    let team = Admin::of(&g, Some(TEAM_A));
    let root = Admin::of(&g, Some(ROOT));

    // Reads and writes of a name in team-b answer as for a name nowhere.
    // The same answer, word for word, as for a name that is nowhere
    // (`ghost`), the name asked for aside.
    let same_as_missing = |what: &str, name: &str, r: Response, missing: Response| {
        assert_eq!(r.status, 404, "{what}: {}", r.text());
        assert_eq!(r.status, missing.status, "{what}");
        assert_eq!(r.json()["error"]["code"], "not_found", "{what}");
        assert_eq!(
            r.json(),
            missing.json().tap_replace("ghost", name),
            "{what}: {} vs {}",
            r.text(),
            missing.text()
        );
    };
    for (kind, name) in [
        ("services", "b-mock"),
        ("model-apis", "b-exact"),
        ("consumers", "b-client"),
        ("resource-groups", "team-b"),
    ] {
        let path = format!("/{kind}/{name}");
        let ghost = format!("/{kind}/ghost");
        same_as_missing(&path, name, team.get(&path), team.get(&ghost));
        same_as_missing(&path, name, team.delete(&path), team.delete(&ghost));
    }
    same_as_missing(
        "PUT service",
        "b-mock",
        team.put("/services/b-mock", mock_service("b-mock", "team-a")),
        team.put("/services/ghost", mock_service("ghost", "team-a")),
    );
    same_as_missing(
        "PUT Model API",
        "b-exact",
        team.put(
            "/model-apis/b-exact",
            chat_api("b-exact", &["z.example.com"], "b-mock", "team-a"),
        ),
        team.put(
            "/model-apis/ghost",
            chat_api("ghost", &["z.example.com"], "b-mock", "team-a"),
        ),
    );
    same_as_missing(
        "routes",
        "b-exact",
        team.get("/model-apis/b-exact/routes"),
        team.get("/model-apis/ghost/routes"),
    );
    same_as_missing(
        "debug",
        "b-exact",
        team.post("/model-apis/b-exact/debug", json!({})),
        team.post("/model-apis/ghost/debug", json!({})),
    );
    same_as_missing(
        "DELETE model API",
        "b-exact",
        team.delete("/model-apis/b-exact?confirm=b-exact"),
        team.delete("/model-apis/ghost?confirm=ghost"),
    );
    same_as_missing(
        "add key",
        "b-client",
        team.post("/consumers/b-client/keys", json!({})),
        team.post("/consumers/ghost/keys", json!({})),
    );
    same_as_missing(
        "revoke key",
        "b-client",
        team.delete("/consumers/b-client/keys/config-0"),
        team.delete("/consumers/ghost/keys/config-0"),
    );

    // A Model API naming team-b's service: the 400 of an unknown service.
    assert_eq!(
        team.post("/services", mock_service("a-mock", "team-a"))
            .status,
        201
    );
    let hidden = team.post(
        "/model-apis",
        chat_api("a1", &["a1.example.com"], "b-mock", "team-a"),
    );
    let missing = team.post(
        "/model-apis",
        chat_api("a1", &["a1.example.com"], "ghost", "team-a"),
    );
    let e = expect_error(&hidden, 400, "invalid_field");
    assert_eq!(
        e,
        missing.json()["error"]
            .clone()
            .tap_replace("ghost", "b-mock")
    );
    assert_eq!(e["field"], "service.target.service");

    // auth.consumers may name only the token's own consumers: team-b's and
    // unknown names get the same 400.
    assert_eq!(
        team.post(
            "/consumers",
            json!({"name": "a-client", "resource_group": "team-a"})
        )
        .status,
        201
    );
    let mut api = chat_api("a2", &["a2.example.com"], "a-mock", "team-a");
    let admitting = |name: &str| {
        let mut api = api.clone();
        api["auth"] = json!({"enabled": true, "consumers": ["a-client", name]});
        team.post("/model-apis", api)
    };
    let hidden = admitting("b-client");
    let e = expect_error(&hidden, 400, "invalid_field");
    assert_eq!(e["field"], "auth.consumers[1]", "{e}");
    assert_eq!(
        hidden.json(),
        admitting("ghost").json().tap_replace("ghost", "b-client")
    );
    api["auth"] = json!({"enabled": true, "consumers": ["a-client"]});
    let r = team.post("/model-apis", api.clone());
    assert_eq!(r.status, 201, "{}", r.text());
    // ... and the full token may name any consumer.
    let mut other = chat_api("a3", &["a3.example.com"], "a-mock", "team-a");
    other["auth"] = json!({"enabled": true, "consumers": ["b-client"]});
    assert_eq!(root.post("/model-apis", other).status, 201);

    // No 409 names another group's resource: team-b's Model API (made by
    // the full token) uses team-a's service.
    let r = root.post(
        "/model-apis",
        chat_api("b-user", &["b-user.example.com"], "a-mock", "team-b"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = team.delete("/services/a-mock");
    expect_error(&r, 409, "in_use");
    names_nothing_of_team_b(&r);
    // A change that would break team-b's Model API (the provider no longer
    // speaks its protocol).
    let r = team.put(
        "/services/a-mock",
        json!({"name": "a-mock", "provider": "comfyui", "base_url": "http://127.0.0.1:9",
               "resource_group": "team-a"}),
    );
    expect_error(&r, 409, "conflict");
    names_nothing_of_team_b(&r);
    // A name taken in another group: 409, and nothing more about it.
    let r = team.post("/services", mock_service("b-mock", "team-a"));
    expect_error(&r, 409, "already_exists");
    assert!(!r.text().contains("config file"), "{}", r.text());
    // The full token sees everything and is told everything.
    let r = root.delete("/services/a-mock");
    assert!(expect_error(&r, 409, "in_use")["message"]
        .as_str()
        .unwrap()
        .contains("b-user"));
}

/// Replaces a string inside every string of a JSON value (the error of an
/// unknown name compared with the error of a hidden one).
trait TapReplace {
    fn tap_replace(self, from: &str, to: &str) -> Value;
}

impl TapReplace for Value {
    fn tap_replace(self, from: &str, to: &str) -> Value {
        match self {
            Value::String(s) => Value::String(s.replace(from, to)),
            Value::Array(a) => {
                Value::Array(a.into_iter().map(|v| v.tap_replace(from, to)).collect())
            }
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, v.tap_replace(from, to)))
                    .collect(),
            ),
            v => v,
        }
    }
}

/// #3: a scoped token cannot put a Model API where it would take requests
/// another group's Model API serves: an exact host its wildcard covers, a
/// more specific wildcard, the same domain with a longer (or the same)
/// base path; on create or edit. 409, naming nothing of the other group.
#[test]
fn a_scoped_token_cannot_take_over_another_groups_domains() {
    let (g, _dir) = start(&both_tokens(), "warn", TEAM_B);
    let team = Admin::of(&g, Some(TEAM_A));
    assert_eq!(
        team.post("/services", mock_service("a-mock", "team-a"))
            .status,
        201
    );
    let takeovers: [(&str, &str); 5] = [
        ("x.corp.example.com", "/"),
        ("X.Corp.Example.com", "/team"),
        ("*.deep.corp.example.com", "/"),
        ("api.example.com", "/v1"),
        ("API.example.com", "/"),
    ];
    for (i, (domain, base)) in takeovers.iter().enumerate() {
        let mut api = chat_api(&format!("t{i}"), &[domain], "a-mock", "team-a");
        api["base_path"] = json!(base);
        let r = team.post("/model-apis", api);
        let e = expect_error(&r, 409, "conflict");
        assert_eq!(e["field"], "domains[0]", "{domain} {base}: {e}");
        names_nothing_of_team_b(&r);
    }
    // What takes nothing from team-b is fine: a host the wildcard does not
    // cover, another host, a less specific wildcard.
    for (i, domain) in ["corp.example.com", "a.example.com", "*.example.com"]
        .iter()
        .enumerate()
    {
        let r = team.post(
            "/model-apis",
            chat_api(&format!("ok{i}"), &[domain], "a-mock", "team-a"),
        );
        assert_eq!(r.status, 201, "{domain}: {}", r.text());
    }
    // Editing into a takeover is refused the same way; nothing changes.
    let mut edit = chat_api(
        "ok1",
        &["a.example.com", "y.corp.example.com"],
        "a-mock",
        "team-a",
    );
    let r = team.put("/model-apis/ok1", edit.clone());
    let e = expect_error(&r, 409, "conflict");
    assert_eq!(e["field"], "domains[1]", "{e}");
    names_nothing_of_team_b(&r);
    assert_eq!(
        team.get("/model-apis/ok1").json()["domains"],
        json!(["a.example.com"])
    );
    // team-b's traffic is still team-b's.
    let chat = |host: &str, path: &str| {
        request(
            g.addr,
            "POST",
            path,
            &[("host", host)],
            br#"{"model":"m","messages":[]}"#,
        )
    };
    assert_eq!(
        chat("y.corp.example.com", "/v1/chat/completions").status,
        200
    );
    assert_eq!(chat("api.example.com", "/v1/chat/completions").status, 200);
    // The full token decides for every group: it may.
    edit["resource_group"] = json!("team-a");
    let r = Admin::of(&g, Some(ROOT)).put("/model-apis/ok1", edit);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// #2: a team's debug request cannot be sent as another group's host (nor
/// to a path another group's Model API serves): the trusted debug marker,
/// which bypasses consumer auth, reaches only the Model API named.
#[test]
fn debug_stays_inside_its_own_model_api() {
    let b_up = MockLlm::start("team-b-upstream");
    let team_b = format!(
        r#"
[[services]]
name = "b-up"
provider = "openai_compatible"
base_url = "{url}"
api_keys = ["sk-team-b-provider-key"]
resource_group = "team-b"
[[consumers]]
name = "b-client"
resource_group = "team-b"
keys = ["team-b-consumer-key"]
[[model_apis]]
name = "b-chat"
scenario = "text"
protocol = "openai"
domains = ["b.example.com"]
resource_group = "team-b"
auth = {{ enabled = true, consumers = ["b-client"] }}
service = {{ mode = "single", target = {{ service = "b-up" }} }}
[[model_apis]]
name = "b-deep"
scenario = "text"
protocol = "openai"
domains = ["shared.example.com"]
base_path = "/v1"
resource_group = "team-b"
auth = {{ enabled = true, consumers = ["b-client"] }}
service = {{ mode = "single", target = {{ service = "b-up" }} }}
"#,
        url = b_up.url()
    );
    let (g, _dir) = start(&both_tokens(), "warn", &team_b);
    let team = Admin::of(&g, Some(TEAM_A));
    assert_eq!(
        team.post("/services", mock_service("a-mock", "team-a"))
            .status,
        201
    );
    let r = team.post(
        "/model-apis",
        chat_api(
            "a-chat",
            &["a.example.com", "*.a.example.com"],
            "a-mock",
            "team-a",
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Same host as b-deep, shorter base path: takes nothing from it.
    let r = team.post(
        "/model-apis",
        chat_api("a-shared", &["shared.example.com"], "a-mock", "team-a"),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // Through its own domains (any case, a port, a host its wildcard
    // covers, the wildcard itself): answered by its own service.
    for domain in [
        None,
        Some("A.Example.COM"),
        Some("a.example.com:8080"),
        Some("x.a.example.com"),
        Some("*.a.example.com"),
    ] {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let Some(d) = domain {
            body["domain"] = json!(d);
        }
        let r = team.post("/model-apis/a-chat/debug", body);
        assert_eq!(r.status, 200, "{domain:?}: {}", r.text());
        assert_eq!(r.json()["status"], 200, "{domain:?}: {}", r.text());
    }

    b_up.clear();
    for domain in ["b.example.com", "B.EXAMPLE.COM", "b.example.com:80", "*"] {
        let r = team.post(
            "/model-apis/a-chat/debug",
            json!({"model": "m", "messages": [], "domain": domain}),
        );
        let e = expect_error(&r, 400, "invalid_field");
        assert_eq!(e["field"], "domain", "{domain}: {e}");
        assert!(!r.text().contains("b-chat"), "{domain}: {}", r.text());
    }
    // The host is its own, but the default route's path is under another
    // group's longer base path there: refused too, without naming it.
    let r = team.post("/model-apis/a-shared/debug", json!({"model": "m"}));
    let e = expect_error(&r, 400, "invalid_field");
    assert_eq!(e["field"], "path", "{e}");
    assert!(!r.text().contains("b-deep"), "{}", r.text());
    assert!(
        b_up.requests().is_empty(),
        "team-b's upstream got a debug request: {:?}",
        b_up.requests()
    );
    // The full token may debug b-chat itself, through its own domain.
    let r = Admin::of(&g, Some(ROOT)).post("/model-apis/b-chat/debug", json!({"model": "m"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b_up.requests().len(), 1);
}

/// Found with #7 (secrets now resolved strictly): a scoped token must not
/// make the gateway read the host for it. A service of its own with
/// `api_keys = ["env:MODELGATE_ADMIN_TOKEN"]` (or a `file:` path) and an
/// upstream it runs would be sent that secret, e.g. the full admin token.
#[test]
fn a_scoped_token_cannot_make_the_gateway_read_the_host() {
    let up = MockLlm::start("team-a-upstream");
    let (g, dir) = start(&both_tokens(), "warn", "");
    let team = Admin::of(&g, Some(TEAM_A));
    let config = dir.0.join("state.json").display().to_string();
    let service = |extra: Value| {
        let mut s = json!({"name": "a-up", "provider": "openai_compatible",
            "base_url": up.url(), "resource_group": "team-a"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    for (extra, field) in [
        (
            json!({"api_keys": ["sk-own-0123456789", "env:HOME"]}),
            "api_keys[1]",
        ),
        (
            json!({"api_keys": [format!("file:{config}")]}),
            "api_keys[0]",
        ),
        (json!({"headers": {"x-k": "env:HOME"}}), "headers.x-k"),
        (json!({"ca_file": config}), "ca_file"),
    ] {
        let r = team.post("/services", service(extra.clone()));
        let e = expect_error(&r, 403, "forbidden");
        assert_eq!(e["field"], field, "{extra}: {e}");
    }
    // The full token may; what it set, the team may keep when it edits.
    let root = Admin::of(&g, Some(ROOT));
    let r = root.post("/services", service(json!({"api_keys": ["env:HOME"]})));
    assert_eq!(r.status, 201, "{}", r.text());
    let mut shown = team.get("/services/a-up").json();
    assert_eq!(shown["api_keys"], json!(["env:HOME"]));
    shown["timeout_ms"] = json!(1000);
    let r = team.put("/services/a-up", shown.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    shown["api_keys"] = json!(["env:PATH"]);
    let e = expect_error(&team.put("/services/a-up", shown), 403, "forbidden");
    assert_eq!(e["field"], "api_keys[0]");
}

/// With secrets strict (#7), a secret of the config file that stops
/// resolving makes admin writes fail: the full token is told which field,
/// a scoped token only that the gateway's own configuration is broken (no
/// path of the operator's files).
#[test]
fn the_gateways_own_settings_are_not_told_to_a_scoped_token() {
    let dir = TempDir::new();
    let secret = dir.0.join("root-token");
    std::fs::write(&secret, ROOT).unwrap();
    let admin = format!(
        "token = \"file:{}\"\n[[admin.tokens]]\ntoken = \"{TEAM_A}\"\nresource_groups = [\"team-a\"]\n",
        secret.display()
    );
    let (g, _store) = start(&admin, "warn", "");
    let team = Admin::of(&g, Some(TEAM_A));
    assert_eq!(
        team.post("/services", mock_service("a1", "team-a")).status,
        201
    );
    std::fs::remove_file(&secret).unwrap();
    let r = team.post("/services", mock_service("a2", "team-a"));
    expect_error(&r, 409, "conflict");
    assert!(
        !r.text().contains("root-token") && !r.text().contains("admin.token"),
        "{}",
        r.text()
    );
    let r = Admin::of(&g, Some(ROOT)).post("/services", mock_service("a3", "team-a"));
    let e = expect_error(&r, 400, "invalid_field");
    assert_eq!(e["field"], "admin.token", "{e}");
}
