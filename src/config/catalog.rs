//! Scenarios × protocols → default routes (PRODUCT.md §5), and the per-request
//! route match.
//!
//! The table is static: [`routes`] returns a slice of [`RouteDef`]s for a
//! (scenario, protocol) pair, and [`match_route`] scans such a slice comparing
//! path segments in place, without allocating.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a Model API serves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Text,
    Image,
    Video,
    Audio,
    Embedding,
    Rerank,
    Other,
}

/// The wire protocol a Model API speaks to its clients.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Openai,
    Anthropic,
    Dashscope,
    Comfyui,
    Vllm,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Text,
        Scenario::Image,
        Scenario::Video,
        Scenario::Audio,
        Scenario::Embedding,
        Scenario::Rerank,
        Scenario::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Text => "text",
            Scenario::Image => "image",
            Scenario::Video => "video",
            Scenario::Audio => "audio",
            Scenario::Embedding => "embedding",
            Scenario::Rerank => "rerank",
            Scenario::Other => "other",
        }
    }

    /// The protocols this scenario offers, in the order of PRODUCT.md §5.
    pub fn protocols(self) -> &'static [Protocol] {
        use Protocol::*;
        match self {
            Scenario::Text => &[Openai, Anthropic],
            Scenario::Image => &[Dashscope, Openai, Comfyui],
            Scenario::Video => &[Dashscope],
            Scenario::Audio => &[Dashscope, Openai],
            Scenario::Embedding => &[Openai],
            Scenario::Rerank => &[Dashscope, Vllm],
            Scenario::Other => &[Openai],
        }
    }

    /// Whether `p` is one of [`Scenario::protocols`].
    pub fn offers(self, p: Protocol) -> bool {
        self.protocols().contains(&p)
    }
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::Openai,
        Protocol::Anthropic,
        Protocol::Dashscope,
        Protocol::Comfyui,
        Protocol::Vllm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Openai => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Dashscope => "dashscope",
            Protocol::Comfyui => "comfyui",
            Protocol::Vllm => "vllm",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scenario or protocol name; its message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// `"scenario"` or `"protocol"`.
    pub kind: &'static str,
    pub value: String,
    pub valid: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`; expected one of: {}",
            self.kind,
            self.value,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for Scenario {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "scenario",
                value: s.to_owned(),
                valid: &[
                    "text",
                    "image",
                    "video",
                    "audio",
                    "embedding",
                    "rerank",
                    "other",
                ],
            })
    }
}

impl FromStr for Protocol {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Protocol::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "protocol",
                value: s.to_owned(),
                valid: &["openai", "anthropic", "dashscope", "comfyui", "vllm"],
            })
    }
}

/// A set of HTTP methods.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const POST: Methods = Methods(2);
    pub const PUT: Methods = Methods(4);
    pub const PATCH: Methods = Methods(8);
    pub const DELETE: Methods = Methods(16);
    /// GET, POST, PUT, PATCH and DELETE.
    pub const ANY: Methods = Methods(31);

    const NAMES: [(&'static str, Methods); 5] = [
        ("GET", Methods::GET),
        ("POST", Methods::POST),
        ("PUT", Methods::PUT),
        ("PATCH", Methods::PATCH),
        ("DELETE", Methods::DELETE),
    ];

    pub const fn union(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the request method (case-sensitive, as HTTP methods are) is
    /// in the set.
    #[inline]
    pub fn contains(self, method: &str) -> bool {
        let bit = match method {
            "GET" => 1,
            "POST" => 2,
            "PUT" => 4,
            "PATCH" => 8,
            "DELETE" => 16,
            _ => return false,
        };
        self.0 & bit != 0
    }

    /// The method names in the set, in GET, POST, PUT, PATCH, DELETE order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Methods::NAMES
            .into_iter()
            .filter(move |(_, m)| self.0 & m.0 != 0)
            .map(|(n, _)| n)
    }

    /// The `Allow` header value for a 405: `GET, POST`.
    pub fn allow_header(self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }
}

impl std::ops::BitOr for Methods {
    type Output = Methods;
    fn bitor(self, rhs: Methods) -> Methods {
        self.union(rhs)
    }
}

impl Serialize for Methods {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// Where a route's request carries the model name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// `model` is read from the JSON body.
    Json,
    /// `model` is read from the multipart form field `model`.
    Multipart,
    /// No model: the body is streamed through as it is.
    Passthrough,
}

/// One default route of a (scenario, protocol) pair.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct RouteDef {
    pub name: &'static str,
    /// Relative to the Model API's base path; `{x}` is one non-empty segment.
    pub path: &'static str,
    pub methods: Methods,
    /// Also serves sub-paths (`/v1/files` serves `/v1/files/abc/content`).
    /// A path ending in `/` serves its sub-paths only.
    pub collection: bool,
    pub websocket: bool,
    pub body: Body,
}

const GET: Methods = Methods::GET;
const POST: Methods = Methods::POST;
const ANY: Methods = Methods::ANY;

const fn r(name: &'static str, path: &'static str, methods: Methods, body: Body) -> RouteDef {
    RouteDef {
        name,
        path,
        methods,
        collection: false,
        websocket: false,
        body,
    }
}

/// An "any"-method collection route: serves its sub-paths too.
const fn coll(name: &'static str, path: &'static str) -> RouteDef {
    RouteDef {
        name,
        path,
        methods: ANY,
        collection: true,
        websocket: false,
        body: Body::Passthrough,
    }
}

const fn ws(name: &'static str, path: &'static str) -> RouteDef {
    RouteDef {
        name,
        path,
        methods: GET,
        collection: false,
        websocket: true,
        body: Body::Passthrough,
    }
}

use Body::{Json, Multipart, Passthrough as Pass};

static TEXT_OPENAI: [RouteDef; 2] = [
    r("create-chat-completion", "/v1/chat/completions", POST, Json),
    r("create-completion", "/v1/completions", POST, Json),
];

static TEXT_ANTHROPIC: [RouteDef; 1] = [r("create-message", "/v1/messages", POST, Json)];

static IMAGE_DASHSCOPE: [RouteDef; 6] = [
    r(
        "dashscope-text-to-image-synthesis",
        "/api/v1/services/aigc/text2image/image-synthesis",
        POST,
        Json,
    ),
    r(
        "dashscope-image-to-image-synthesis",
        "/api/v1/services/aigc/image2image/image-synthesis",
        POST,
        Json,
    ),
    r(
        "dashscope-image-to-image-outpainting",
        "/api/v1/services/aigc/image2image/out-painting",
        POST,
        Json,
    ),
    r(
        "dashscope-virtual-model-generation",
        "/api/v1/services/aigc/virtualmodel/generation",
        POST,
        Json,
    ),
    r(
        "dashscope-background-generation",
        "/api/v1/services/aigc/background-generation/generation",
        POST,
        Json,
    ),
    coll("tasks", "/api/v1/tasks"),
];

static IMAGE_OPENAI: [RouteDef; 3] = [
    r(
        "openai-image-generation",
        "/api/v1/images/generations",
        POST,
        Json,
    ),
    r("openai-image-edit", "/api/v1/images/edits", POST, Multipart),
    r(
        "openai-image-variation",
        "/api/v1/images/variations",
        POST,
        Multipart,
    ),
];

static IMAGE_COMFYUI: [RouteDef; 25] = [
    ws("comfyui-websocket", "/ws"),
    r("comfyui-embeddings", "/embeddings", GET, Pass),
    r("comfyui-extensions", "/extensions", GET, Pass),
    r("comfyui-features", "/features", GET, Pass),
    r("comfyui-models", "/models", GET, Pass),
    r("comfyui-models-folder", "/models/{folder}", GET, Pass),
    r(
        "comfyui-workflow-templates",
        "/workflow_templates",
        GET,
        Pass,
    ),
    r("comfyui-upload-image", "/upload/image", POST, Multipart),
    r("comfyui-upload-mask", "/upload/mask", POST, Multipart),
    r("comfyui-view", "/view", GET, Pass),
    RouteDef {
        collection: true,
        ..r("comfyui-view-metadata", "/view_metadata/", GET, Pass)
    },
    r("comfyui-system-stats", "/system_stats", GET, Pass),
    r("comfyui-prompt", "/prompt", GET.union(POST), Pass),
    r("comfyui-object-info", "/object_info", GET, Pass),
    r(
        "comfyui-object-info-class",
        "/object_info/{node_class}",
        GET,
        Pass,
    ),
    r("comfyui-history", "/history", GET.union(POST), Pass),
    r(
        "comfyui-history-prompt-id",
        "/history/{prompt_id}",
        GET,
        Pass,
    ),
    r("comfyui-queue", "/queue", GET.union(POST), Pass),
    r("comfyui-interrupt", "/interrupt", POST, Pass),
    r("comfyui-free", "/free", POST, Pass),
    r("comfyui-userdata", "/userdata", GET, Pass),
    r("comfyui-userdata-v2", "/v2/userdata", GET, Pass),
    r(
        "comfyui-userdata-file",
        "/userdata/{file}",
        GET.union(POST).union(Methods::DELETE),
        Pass,
    ),
    r(
        "comfyui-userdata-file-move",
        "/userdata/{file}/move/{dest}",
        POST,
        Pass,
    ),
    r("comfyui-users", "/users", GET.union(POST), Pass),
];

static VIDEO_DASHSCOPE: [RouteDef; 3] = [
    r(
        "dashscope-video-generation-synthesis",
        "/api/v1/services/aigc/video-generation/video-synthesis",
        POST,
        Json,
    ),
    r(
        "dashscope-image-to-video-synthesis",
        "/api/v1/services/aigc/image2video/video-synthesis",
        POST,
        Json,
    ),
    coll("tasks", "/api/v1/tasks"),
];

static AUDIO_DASHSCOPE: [RouteDef; 1] = [ws(
    "dashscope-text-to-audio-synthesis",
    "/api-ws/v1/inference",
)];

static AUDIO_OPENAI: [RouteDef; 1] = [r("openai-audio-speech", "/api/v1/audio/speech", POST, Json)];

static EMBEDDING_OPENAI: [RouteDef; 1] = [r("create-embedding", "/v1/embeddings", POST, Json)];

static RERANK_DASHSCOPE: [RouteDef; 1] = [r(
    "rerank",
    "/api/v1/services/rerank/text-rerank/text-rerank",
    POST,
    Json,
)];

static RERANK_VLLM: [RouteDef; 1] = [r("rerank", "/v1/rerank", POST, Json)];

static OTHER_OPENAI: [RouteDef; 4] = [
    coll("models", "/v1/models"),
    coll("files", "/v1/files"),
    coll("batches", "/v1/batches"),
    coll("fine-tuning", "/v1/fine_tuning"),
];

/// The default routes of a (scenario, protocol) pair; empty when the
/// scenario does not offer the protocol.
pub fn routes(s: Scenario, p: Protocol) -> &'static [RouteDef] {
    use Protocol as P;
    use Scenario as S;
    match (s, p) {
        (S::Text, P::Openai) => &TEXT_OPENAI,
        (S::Text, P::Anthropic) => &TEXT_ANTHROPIC,
        (S::Image, P::Dashscope) => &IMAGE_DASHSCOPE,
        (S::Image, P::Openai) => &IMAGE_OPENAI,
        (S::Image, P::Comfyui) => &IMAGE_COMFYUI,
        (S::Video, P::Dashscope) => &VIDEO_DASHSCOPE,
        (S::Audio, P::Dashscope) => &AUDIO_DASHSCOPE,
        (S::Audio, P::Openai) => &AUDIO_OPENAI,
        (S::Embedding, P::Openai) => &EMBEDDING_OPENAI,
        (S::Rerank, P::Dashscope) => &RERANK_DASHSCOPE,
        (S::Rerank, P::Vllm) => &RERANK_VLLM,
        (S::Other, P::Openai) => &OTHER_OPENAI,
        _ => &[],
    }
}

/// The outcome of [`match_route`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RouteMatch {
    Found(&'static RouteDef),
    /// A route has this path but not this method (answer 405 with
    /// `Allow: route.methods`).
    MethodNotAllowed(&'static RouteDef),
    NotFound,
}

impl RouteDef {
    /// Whether `path` (base path already stripped, no query) is served by
    /// this route, whatever the method.
    #[inline]
    pub fn matches_path(&self, path: &str) -> bool {
        let pat = self.path;
        if self.collection {
            if pat.ends_with('/') {
                return path.starts_with(pat);
            }
            return match path.strip_prefix(pat) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            };
        }
        if !pat.contains('{') {
            return path == pat;
        }
        let mut ps = pat.split('/');
        let mut xs = path.split('/');
        loop {
            match (ps.next(), xs.next()) {
                (None, None) => return true,
                (Some(p), Some(x)) => {
                    let ok = if p.starts_with('{') {
                        !x.is_empty()
                    } else {
                        p == x
                    };
                    if !ok {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

/// Finds the route serving `method` `path` (`path` already stripped of the
/// base path and the query). The first route matching both wins; a path
/// served only under other methods gives `MethodNotAllowed` with the first
/// route that has the path.
pub fn match_route(routes: &'static [RouteDef], method: &str, path: &str) -> RouteMatch {
    let mut other_method = None;
    for route in routes {
        if route.matches_path(path) {
            if route.methods.contains(method) {
                return RouteMatch::Found(route);
            }
            other_method.get_or_insert(route);
        }
    }
    match other_method {
        Some(r) => RouteMatch::MethodNotAllowed(r),
        None => RouteMatch::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PRODUCT.md §5, one line per route: scenario, protocol, name, route
    /// path, methods, body kind, a concrete request path it serves.
    #[rustfmt::skip]
    const TABLE: &[(&str, &str, &str, &str, &str, Body, &str)] = &[
        ("text", "openai", "create-chat-completion", "/v1/chat/completions", "POST", Json, "/v1/chat/completions"),
        ("text", "openai", "create-completion", "/v1/completions", "POST", Json, "/v1/completions"),
        ("text", "anthropic", "create-message", "/v1/messages", "POST", Json, "/v1/messages"),
        ("image", "dashscope", "dashscope-text-to-image-synthesis", "/api/v1/services/aigc/text2image/image-synthesis", "POST", Json, "/api/v1/services/aigc/text2image/image-synthesis"),
        ("image", "dashscope", "dashscope-image-to-image-synthesis", "/api/v1/services/aigc/image2image/image-synthesis", "POST", Json, "/api/v1/services/aigc/image2image/image-synthesis"),
        ("image", "dashscope", "dashscope-image-to-image-outpainting", "/api/v1/services/aigc/image2image/out-painting", "POST", Json, "/api/v1/services/aigc/image2image/out-painting"),
        ("image", "dashscope", "dashscope-virtual-model-generation", "/api/v1/services/aigc/virtualmodel/generation", "POST", Json, "/api/v1/services/aigc/virtualmodel/generation"),
        ("image", "dashscope", "dashscope-background-generation", "/api/v1/services/aigc/background-generation/generation", "POST", Json, "/api/v1/services/aigc/background-generation/generation"),
        ("image", "dashscope", "tasks", "/api/v1/tasks", "GET POST PUT PATCH DELETE", Pass, "/api/v1/tasks/86ecf553-d340-4e21-af6e-a0c6a421c010"),
        ("image", "openai", "openai-image-generation", "/api/v1/images/generations", "POST", Json, "/api/v1/images/generations"),
        ("image", "openai", "openai-image-edit", "/api/v1/images/edits", "POST", Multipart, "/api/v1/images/edits"),
        ("image", "openai", "openai-image-variation", "/api/v1/images/variations", "POST", Multipart, "/api/v1/images/variations"),
        ("image", "comfyui", "comfyui-websocket", "/ws", "GET", Pass, "/ws"),
        ("image", "comfyui", "comfyui-embeddings", "/embeddings", "GET", Pass, "/embeddings"),
        ("image", "comfyui", "comfyui-extensions", "/extensions", "GET", Pass, "/extensions"),
        ("image", "comfyui", "comfyui-features", "/features", "GET", Pass, "/features"),
        ("image", "comfyui", "comfyui-models", "/models", "GET", Pass, "/models"),
        ("image", "comfyui", "comfyui-models-folder", "/models/{folder}", "GET", Pass, "/models/checkpoints"),
        ("image", "comfyui", "comfyui-workflow-templates", "/workflow_templates", "GET", Pass, "/workflow_templates"),
        ("image", "comfyui", "comfyui-upload-image", "/upload/image", "POST", Multipart, "/upload/image"),
        ("image", "comfyui", "comfyui-upload-mask", "/upload/mask", "POST", Multipart, "/upload/mask"),
        ("image", "comfyui", "comfyui-view", "/view", "GET", Pass, "/view"),
        ("image", "comfyui", "comfyui-view-metadata", "/view_metadata/", "GET", Pass, "/view_metadata/loras"),
        ("image", "comfyui", "comfyui-system-stats", "/system_stats", "GET", Pass, "/system_stats"),
        ("image", "comfyui", "comfyui-prompt", "/prompt", "GET POST", Pass, "/prompt"),
        ("image", "comfyui", "comfyui-object-info", "/object_info", "GET", Pass, "/object_info"),
        ("image", "comfyui", "comfyui-object-info-class", "/object_info/{node_class}", "GET", Pass, "/object_info/KSampler"),
        ("image", "comfyui", "comfyui-history", "/history", "GET POST", Pass, "/history"),
        ("image", "comfyui", "comfyui-history-prompt-id", "/history/{prompt_id}", "GET", Pass, "/history/0b5e-41"),
        ("image", "comfyui", "comfyui-queue", "/queue", "GET POST", Pass, "/queue"),
        ("image", "comfyui", "comfyui-interrupt", "/interrupt", "POST", Pass, "/interrupt"),
        ("image", "comfyui", "comfyui-free", "/free", "POST", Pass, "/free"),
        ("image", "comfyui", "comfyui-userdata", "/userdata", "GET", Pass, "/userdata"),
        ("image", "comfyui", "comfyui-userdata-v2", "/v2/userdata", "GET", Pass, "/v2/userdata"),
        ("image", "comfyui", "comfyui-userdata-file", "/userdata/{file}", "GET POST DELETE", Pass, "/userdata/workflows%2Fa.json"),
        ("image", "comfyui", "comfyui-userdata-file-move", "/userdata/{file}/move/{dest}", "POST", Pass, "/userdata/a.json/move/b.json"),
        ("image", "comfyui", "comfyui-users", "/users", "GET POST", Pass, "/users"),
        ("video", "dashscope", "dashscope-video-generation-synthesis", "/api/v1/services/aigc/video-generation/video-synthesis", "POST", Json, "/api/v1/services/aigc/video-generation/video-synthesis"),
        ("video", "dashscope", "dashscope-image-to-video-synthesis", "/api/v1/services/aigc/image2video/video-synthesis", "POST", Json, "/api/v1/services/aigc/image2video/video-synthesis"),
        ("video", "dashscope", "tasks", "/api/v1/tasks", "GET POST PUT PATCH DELETE", Pass, "/api/v1/tasks"),
        ("audio", "dashscope", "dashscope-text-to-audio-synthesis", "/api-ws/v1/inference", "GET", Pass, "/api-ws/v1/inference"),
        ("audio", "openai", "openai-audio-speech", "/api/v1/audio/speech", "POST", Json, "/api/v1/audio/speech"),
        ("embedding", "openai", "create-embedding", "/v1/embeddings", "POST", Json, "/v1/embeddings"),
        ("rerank", "dashscope", "rerank", "/api/v1/services/rerank/text-rerank/text-rerank", "POST", Json, "/api/v1/services/rerank/text-rerank/text-rerank"),
        ("rerank", "vllm", "rerank", "/v1/rerank", "POST", Json, "/v1/rerank"),
        ("other", "openai", "models", "/v1/models", "GET POST PUT PATCH DELETE", Pass, "/v1/models/gpt-4o"),
        ("other", "openai", "files", "/v1/files", "GET POST PUT PATCH DELETE", Pass, "/v1/files/file-abc/content"),
        ("other", "openai", "batches", "/v1/batches", "GET POST PUT PATCH DELETE", Pass, "/v1/batches/batch_1/cancel"),
        ("other", "openai", "fine-tuning", "/v1/fine_tuning", "GET POST PUT PATCH DELETE", Pass, "/v1/fine_tuning/jobs"),
    ];

    const ALL_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

    fn pair(s: &str, p: &str) -> &'static [RouteDef] {
        routes(s.parse().unwrap(), p.parse().unwrap())
    }

    #[test]
    fn every_row_of_the_table() {
        for &(s, p, name, path, methods, body, example) in TABLE {
            let rs = pair(s, p);
            let def = rs
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("{s}/{p}: no route {name}"));
            assert_eq!(def.path, path, "{name}");
            assert_eq!(def.body, body, "{name}");
            assert_eq!(
                def.methods.names().collect::<Vec<_>>().join(" "),
                methods,
                "{name}"
            );
            assert_eq!(
                def.websocket,
                name == "comfyui-websocket" || name == "dashscope-text-to-audio-synthesis",
                "{name}"
            );
            for m in ALL_METHODS {
                let got = match_route(rs, m, example);
                if methods.split(' ').any(|x| x == m) {
                    assert_eq!(got, RouteMatch::Found(def), "{m} {example}");
                } else {
                    assert_eq!(got, RouteMatch::MethodNotAllowed(def), "{m} {example}");
                }
            }
            // The route's own path (with params filled) is served too.
            let own = path.replace("{folder}", "x").replace("{node_class}", "x");
            let own = own.replace("{prompt_id}", "x").replace("{file}", "x");
            let own = own
                .replace("{dest}", "x")
                .replace("_metadata/", "_metadata/x");
            let m = methods.split(' ').next().unwrap();
            assert_eq!(match_route(rs, m, &own), RouteMatch::Found(def), "{own}");
        }
    }

    #[test]
    fn pairs_hold_exactly_the_table() {
        let mut total = 0;
        for s in Scenario::ALL {
            for p in Protocol::ALL {
                let rs = routes(s, p);
                let want: Vec<&str> = TABLE
                    .iter()
                    .filter(|r| r.0 == s.as_str() && r.1 == p.as_str())
                    .map(|r| r.2)
                    .collect();
                let got: Vec<&str> = rs.iter().map(|r| r.name).collect();
                assert_eq!(got, want, "{s}/{p}");
                assert_eq!(s.offers(p), !rs.is_empty(), "{s}/{p}");
                total += rs.len();
            }
        }
        assert_eq!(total, TABLE.len());
        assert_eq!(routes(Scenario::Text, Protocol::Comfyui), &[]);
        assert_eq!(routes(Scenario::Other, Protocol::Anthropic), &[]);
    }

    #[test]
    fn no_match_and_method_cases() {
        let other = routes(Scenario::Other, Protocol::Openai);
        let comfy = routes(Scenario::Image, Protocol::Comfyui);
        let text = routes(Scenario::Text, Protocol::Openai);
        let ds = routes(Scenario::Image, Protocol::Dashscope);
        let not_found: &[(&[RouteDef], &str)] = &[
            (other, "/v1/modelsX"),
            (other, "/v1/models-x/y"),
            (other, "/v1/model"),
            (other, "/v1"),
            (other, ""),
            (other, "/"),
            (other, "/V1/models"),
            (other, "//v1/models"),
            (text, "/v1/chat/completions/"),
            (text, "/v1/chat/completions/x"),
            (text, "/v1/chat/completion"),
            (text, "/v1/chat/completionsX"),
            (text, "/v1/messages"),
            (comfy, "/models/"),
            (comfy, "/models//"),
            (comfy, "/models/a/b"),
            (comfy, "/history/"),
            (comfy, "/history/a/b"),
            (comfy, "/userdata/"),
            (comfy, "/userdata//move/b"),
            (comfy, "/userdata/a/move/"),
            (comfy, "/userdata/a/mov/b"),
            (comfy, "/view_metadata"),
            (comfy, "/view_metadataX/a"),
            (comfy, "/viewX"),
            (comfy, "/ws/x"),
            (ds, "/api/v1/tasksX"),
            (ds, "/api/v1/task"),
        ];
        for &(rs, path) in not_found {
            for m in ALL_METHODS {
                assert_eq!(match_route(rs, m, path), RouteMatch::NotFound, "{m} {path}");
            }
        }
        // Collections serve their sub-paths with every method.
        for path in [
            "/v1/files",
            "/v1/files/",
            "/v1/files/abc/content",
            "/v1/models/ft:gpt-4o:x",
        ] {
            for m in ALL_METHODS {
                assert!(
                    matches!(match_route(other, m, path), RouteMatch::Found(_)),
                    "{m} {path}"
                );
            }
        }
        let RouteMatch::Found(t) = match_route(ds, "GET", "/api/v1/tasks/abc") else {
            panic!()
        };
        assert_eq!(t.name, "tasks");
        assert!(matches!(
            match_route(comfy, "GET", "/view_metadata/"),
            RouteMatch::Found(RouteDef {
                name: "comfyui-view-metadata",
                ..
            })
        ));
        // Methods outside the five, or in lower case.
        for m in ["HEAD", "OPTIONS", "get", "CONNECT", ""] {
            assert!(matches!(
                match_route(text, m, "/v1/chat/completions"),
                RouteMatch::MethodNotAllowed(_)
            ));
            assert!(matches!(
                match_route(other, m, "/v1/files"),
                RouteMatch::MethodNotAllowed(_)
            ));
        }
        // Neighbouring routes with parameters pick the right one.
        let name = |m, p| match match_route(comfy, m, p) {
            RouteMatch::Found(r) => r.name,
            x => panic!("{m} {p}: {x:?}"),
        };
        assert_eq!(name("GET", "/userdata"), "comfyui-userdata");
        assert_eq!(name("DELETE", "/userdata/a"), "comfyui-userdata-file");
        assert_eq!(
            name("POST", "/userdata/a/move/b"),
            "comfyui-userdata-file-move"
        );
        assert_eq!(name("POST", "/history"), "comfyui-history");
        assert!(matches!(
            match_route(comfy, "POST", "/history/abc"),
            RouteMatch::MethodNotAllowed(RouteDef {
                name: "comfyui-history-prompt-id",
                ..
            })
        ));
        assert!(matches!(
            match_route(comfy, "GET", "/userdata/a/move/b"),
            RouteMatch::MethodNotAllowed(RouteDef {
                name: "comfyui-userdata-file-move",
                ..
            })
        ));
    }

    #[test]
    fn names_and_parsing() {
        for s in Scenario::ALL {
            assert_eq!(s.as_str().parse::<Scenario>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<Scenario>(&format!("\"{s}\"")).unwrap(),
                s
            );
        }
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        let e = "Text".parse::<Scenario>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown scenario `Text`; expected one of: text, image, video, audio, embedding, rerank, other"
        );
        let e = "grpc".parse::<Protocol>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown protocol `grpc`; expected one of: openai, anthropic, dashscope, comfyui, vllm"
        );
    }

    #[test]
    fn methods_set() {
        let m = Methods::GET | Methods::DELETE;
        assert!(m.contains("GET") && m.contains("DELETE") && !m.contains("POST"));
        assert_eq!(m.allow_header(), "GET, DELETE");
        assert_eq!(Methods::ANY.allow_header(), "GET, POST, PUT, PATCH, DELETE");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"["GET","DELETE"]"#);
        let def = &routes(Scenario::Image, Protocol::Openai)[1];
        assert_eq!(
            serde_json::to_value(def).unwrap(),
            serde_json::json!({"name": "openai-image-edit", "path": "/api/v1/images/edits",
                "methods": ["POST"], "collection": false, "websocket": false, "body": "multipart"})
        );
    }
}
