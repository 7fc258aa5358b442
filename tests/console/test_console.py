"""The web console in headless Chromium: token, create a service and a
Model API through the forms (default routes shown while creating), see
them through the admin API, debug with streaming on and watch the answer
arrive, delete with the typed name."""

import json
import os
import urllib.request

from conftest import TOKEN

# Set to a path (e.g. docs/console.png) to keep a screenshot of the debug panel.
SCREENSHOT = os.environ.get("MODELGATE_CONSOLE_SCREENSHOT")


def chat(gateway, path, model):
    req = urllib.request.Request(
        f"http://{gateway.data}{path}",
        method="POST",
        data=json.dumps({"model": model, "messages": []}).encode(),
        headers={"content-type": "application/json", "host": "console.example.com"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def test_console_manages_and_debugs_a_model_api(gateway, browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The page runs under its Content-Security-Policy: nothing it does
    # itself may be refused by it.
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(f"http://{gateway.admin}/console/")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    # Without the token the API answers 401, and the console says so.
    page.wait_for_selector("#banner:not([hidden])")
    assert "401" in page.inner_text("#banner")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("#api-table tbody tr")
    assert page.evaluate("sessionStorage.getItem('modelgate-admin-token')") == TOKEN

    # A service through the form, then deleted with its typed name.
    page.click("#tab-services")
    page.wait_for_selector("#service-table tr[data-name='up']")
    assert "sk-...6789" in page.inner_text("#service-table tr[data-name='up']")
    page.click("#new-service")
    page.fill("#svc-name", "ui-mock")
    page.select_option("#svc-provider", "mock")
    page.click("#svc-save")
    page.wait_for_selector("#service-table tr[data-name='ui-mock']")
    assert gateway.api("GET", "/services/ui-mock")[0] == 200
    page.click("#service-table button[data-delete='ui-mock']")
    page.fill("#confirm-input", "ui-moc")
    assert page.is_disabled("#confirm-ok")
    page.fill("#confirm-input", "ui-mock")
    page.click("#confirm-ok")
    page.wait_for_selector("#service-table tr[data-name='ui-mock']", state="detached")
    assert gateway.api("GET", "/services/ui-mock")[0] == 404

    # A Model API through the form; its default routes show while creating.
    page.click("#tab-apis")
    page.click("#new-api")
    page.fill("#api-name", "console-chat")
    page.select_option("#api-scenario", "text")
    page.select_option("#api-protocol", "anthropic")
    assert "/v1/messages" in page.inner_text("#api-routes")
    page.select_option("#api-protocol", "openai")
    page.fill("#api-domains", "console.example.com")
    page.fill("#api-base-path", "/console")
    routes = page.inner_text("#api-routes")
    assert "/console/v1/chat/completions" in routes and "/console/v1/completions" in routes
    page.select_option("#api-service", "up")
    page.click("#api-save")
    page.wait_for_selector("#api-table tr[data-name='console-chat']")

    status, api = gateway.api("GET", "/model-apis/console-chat")
    assert status == 200
    assert api["domains"] == ["console.example.com"] and api["base_path"] == "/console"
    assert api["service"] == {"mode": "single", "target": {"service": "up", "model": None}}
    assert chat(gateway, "/console/v1/chat/completions", "client-model")[1]["model"] == "client-model"

    # Edit: rewrite the model; applied at once.
    page.click("#api-table tr[data-name='console-chat'] >> text=Edit")
    page.fill("#api-model", "edited-model")
    page.click("#api-save")
    page.wait_for_selector("#api-table tr[data-name='console-chat'] >> text=edited-model")
    assert chat(gateway, "/console/v1/chat/completions", "client-model")[1]["model"] == "edited-model"

    # Debug with streaming on: the answer grows while the stream runs.
    page.click("#api-table tr[data-name='console-chat'] >> text=Debug")
    page.fill("#dbg-model", "m1")
    page.fill("#dbg-params", '{"max_tokens": 12}')
    page.fill("#dbg-custom", '{"enable_search": true}')
    assert page.is_checked("#dbg-stream")
    page.click("#dbg-send")
    page.wait_for_selector("#dbg-answer:not(:empty)")  # (no string eval: the console's CSP forbids it)
    # Part of the answer is shown before the result (with total_ms) arrived.
    assert "total" not in page.inner_text("#dbg-summary")
    partial = int(page.inner_text("#dbg-count"))
    page.wait_for_selector("#dbg-summary >> text=total", timeout=20000)
    final = int(page.inner_text("#dbg-count"))
    assert 0 < partial < final, (partial, final)
    summary = page.inner_text("#dbg-summary")
    assert "status 200" in summary and "service up" in summary, summary
    assert page.inner_text("#dbg-answer").strip()
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)

    # Delete: the typed name is required.
    page.click("#tab-apis")
    page.click("#api-table button[data-delete='console-chat']")
    assert page.is_disabled("#confirm-ok")
    page.fill("#confirm-input", "console-chat")
    page.click("#confirm-ok")
    page.wait_for_selector("#api-table tr[data-name='console-chat']", state="detached")
    assert gateway.api("GET", "/model-apis/console-chat")[0] == 404
    assert not errors, errors
    assert not refused, refused

    # A script injected into the page does not run (no 'unsafe-inline').
    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.injected = 1';
        document.body.append(s);
    }""")
    assert page.evaluate("window.injected") is None
