-- The request modelgate-load sends with --prompt hi --model mock-model
-- (same method, headers and body size), for wrk.
wrk.method = "POST"
wrk.body = '{"messages":[{"content":"hi","role":"user"}],"model":"mock-model"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["User-Agent"] = "modelgate-load/0.1.0"
