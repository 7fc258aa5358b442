"""Starts the real modelgate binary and a real mock-llm upstream on port 0
for the official SDK compatibility tests. Binaries come from target/debug
(or $MODELGATE_BIN_DIR), built by the README's test command."""

import os
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("MODELGATE_BIN_DIR", os.path.join(ROOT, "target", "debug"))


class Proc:
    def __init__(self, args):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.err = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True).start()

    @staticmethod
    def _pump(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_line(self, prefix, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            time.sleep(0.01)
        raise RuntimeError(f"no {prefix!r}: {self.lines} {self.err}")

    def stop(self):
        self.p.kill()
        self.p.wait()


def _binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        pytest.exit(f"{path} missing: run `cargo build --workspace --bins` first", returncode=2)
    return path


@pytest.fixture(scope="session")
def upstream():
    p = Proc([_binary("mock-llm"), "--listen", "127.0.0.1:0", "--name", "compat-up"])
    addr = p.wait_line("listening on ")
    yield addr
    p.stop()


@pytest.fixture(scope="session")
def gateway(upstream):
    config = f"""
[server]
listen = ["127.0.0.1:0"]
workers = 2
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"

[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://{upstream}"
api_keys = ["sk-upstream"]

[[services]]
name = "claude"
provider = "anthropic"
base_url = "http://{upstream}"
api_keys = ["sk-ant-upstream"]

[[services]]
name = "mock"
provider = "mock"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}

[[model_apis]]
name = "embed"
scenario = "embedding"
protocol = "openai"
domains = ["*"]
base_path = "/embed"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "up" }} }}

[[model_apis]]
name = "messages"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
base_path = "/anthropic"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[model_apis]]
name = "translated-messages"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
base_path = "/translated"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "up" }} }}

[[model_apis]]
name = "chat-via-claude"
scenario = "text"
protocol = "openai"
domains = ["*"]
base_path = "/via-claude"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "claude" }} }}

[[model_apis]]
name = "builtin"
scenario = "text"
protocol = "openai"
domains = ["*"]
base_path = "/builtin"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "mock" }} }}

[[model_apis]]
name = "builtin-embed"
scenario = "embedding"
protocol = "openai"
domains = ["*"]
base_path = "/builtin-embed"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "mock" }} }}

[[model_apis]]
name = "builtin-messages"
scenario = "text"
protocol = "anthropic"
domains = ["*"]
base_path = "/builtin-anthropic"
strip_base_path = true
service = {{ mode = "single", target = {{ service = "mock" }} }}
"""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "modelgate.toml")
        with open(path, "w") as f:
            f.write(config)
        p = Proc([_binary("modelgate"), "serve", "--config", path])
        addr = p.wait_line("modelgate listening on ")
        admin = p.wait_line("admin listening on ")
        deadline = time.time() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
        yield f"http://{addr}"
        p.stop()
