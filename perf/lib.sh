# Shared set-up of the comparison scripts (sourced, not run): the same
# nginx static-JSON upstream, nginx reverse proxy and modelgate config for
# every figure, so the figures compare like with like.

ANSWER='{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":9,"total_tokens":34}}'

# nginx answering every request with $ANSWER.  $1 dir, $2 addr, $3 extra main-context directives.
upstream_conf() {
  cat > "$1/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $1/up.pid; error_log $1/up.err warn; ${3:-}
events { worker_connections 40000; }
http { access_log off;
  server { listen $2 backlog=4096; keepalive_requests 100000000;
    location / { default_type application/json; return 200 '$ANSWER'; } } }
EOF
}

# nginx as a plain reverse proxy with upstream keepalive.
# $1 dir, $2 listen addr, $3 upstream addr, $4 extra main-context, $5 extra http-context directives.
proxy_conf() {
  cat > "$1/proxy.conf" <<EOF
worker_processes 1; daemon off; pid $1/ngx.pid; error_log $1/ngx.err warn; ${4:-}
events { worker_connections 40000; }
http { access_log off; ${5:-}
  upstream llm { server $3; keepalive 256; keepalive_requests 100000000; }
  server { listen $2 backlog=4096; keepalive_requests 100000000;
    location / { proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
}

# modelgate with one worker, one Model API on an openai_compatible service.
# $1 dir, $2 listen addr, $3 upstream addr, $4 io mode, $5 extra [server.limits] lines.
modelgate_conf() {
  cat > "$1/modelgate.toml" <<EOF
[server]
listen = ["$2"]
workers = 1
io = "${4:-auto}"
[server.limits]
${5:-}
[admin]
listen = "127.0.0.1:0"
[store]
path = "$1/state.json"
[log]
access = "off"
level = "warn"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://$3"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "up" } }
EOF
}

# A realistic 250-byte chat request for wrk; modelgate reads and routes on `model`.
post_lua() {
  cat > "$1/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-client-0123456789"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128,"stream":false,"user":"bench-user-42"}'
EOF
}

# Waits until every address answers HTTP.
wait_http() {
  for a in "$@"; do
    for _ in $(seq 200); do curl -s -o /dev/null "http://$a/" && break; sleep 0.05; done
  done
}
