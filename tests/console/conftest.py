"""Tests of the admin listener's browser-facing surfaces, run outside cargo:
the web console in Debian's Chromium (Playwright) and the OpenAPI document
under schemathesis. Each module gets the real modelgate binary (with an
admin token and a store in a temp dir) and a slow-streaming mock-llm
upstream on port 0. Binaries come from target/debug (or
$MODELGATE_BIN_DIR), built by the README's test command."""

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("MODELGATE_BIN_DIR", os.path.join(ROOT, "target", "debug"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "console-test-token"


class Proc:
    def __init__(self, args, cwd=None):
        self.p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


class Gateway:
    def __init__(self, data, admin):
        self.data = data
        self.admin = admin

    def api(self, method, path, body=None):
        """Calls the admin API; returns (status, parsed JSON or None)."""
        req = urllib.request.Request(
            f"http://{self.admin}/admin/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="session")
def upstream():
    # Slow stream events, so the console is seen rendering as they arrive.
    p = Proc([_binary("mock-llm"), "--listen", "127.0.0.1:0", "--name", "console-up", "--itl-ms", "150"])
    yield p.wait_line("listening on ")
    p.stop()


@pytest.fixture(scope="module")
def gateway(upstream):
    with tempfile.TemporaryDirectory() as d:
        config = f"""
[server]
listen = ["127.0.0.1:0"]
workers = 2
[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
[store]
path = "{d}/state.json"
[log]
level = "warn"

[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://{upstream}"
api_keys = ["sk-upstream-0123456789"]
"""
        path = os.path.join(d, "modelgate.toml")
        with open(path, "w") as f:
            f.write(config)
        p = Proc([_binary("modelgate"), "serve", "--config", path], cwd=d)
        data = p.wait_line("modelgate listening on ")
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
        yield Gateway(data, admin)
        p.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.exit(f"{CHROMIUM} missing: apt-get install chromium", returncode=2)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()
