// modelgate console: plain JavaScript over the admin API (/admin/v1).
// The admin token (when one is set) is kept in sessionStorage only.
"use strict";

const API = "/admin/v1";
const TOKEN_KEY = "modelgate-admin-token";
const $ = (sel) => document.querySelector(sel);

let catalog = null;
let services = [];
let apis = [];
let editing = null; // the resource being edited (as GET returned it), or null for a new one

// ---------- helpers ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function headers(extra = {}) {
  const h = { "content-type": "application/json", ...extra };
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) h.authorization = "Bearer " + t;
  return h;
}

function show(message, ok = false) {
  const b = $("#banner");
  b.textContent = message;
  b.className = ok ? "banner ok" : "banner";
  b.hidden = !message;
}

async function call(method, path, body) {
  const r = await fetch(API + path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = data.error || {};
    const where = e.field ? ` (${e.field})` : "";
    throw new Error(`${r.status} ${e.code || ""}: ${e.message || r.statusText}${where}`);
  }
  return data;
}

function list(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
}

function joinPath(base, path) {
  return base.replace(/\/+$/, "") + path;
}

// ---------- tabs and token ----------

function selectTab(name) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== name;
}

for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => selectTab(t.dataset.tab));

$("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token").value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
  load();
});

// ---------- loading ----------

async function load() {
  try {
    catalog = catalog || (await call("GET", "/catalog"));
    [services, apis] = await Promise.all([call("GET", "/services"), call("GET", "/model-apis")]);
    show("");
  } catch (e) {
    show(e.message);
    return;
  }
  renderServices();
  renderApis();
  fillSelects();
}

function serviceSummary(api) {
  const s = api.service;
  if (s.mode === "single") return s.target.service + (s.target.model ? ` → ${s.target.model}` : "");
  if (s.mode === "by_model") return "by model: " + s.rules.map((r) => `${r.pattern}→${r.service}`).join(", ");
  return "by weight: " + s.targets.map((t) => `${t.service}×${t.weight}`).join(", ");
}

function renderApis() {
  const body = $("#api-table tbody");
  body.replaceChildren();
  for (const a of apis) {
    const name = el("td", {}, a.name);
    if (a.managed_by_config) name.append(el("span", { class: "badge" }, "config"));
    const actions = el("td", { class: "actions" },
      el("button", { class: "link", onclick: () => openDebug(a.name) }, "Debug"));
    if (!a.managed_by_config) {
      actions.append(
        el("button", { class: "link", onclick: () => editApi(a) }, "Edit"),
        el("button", { class: "link danger", "data-delete": a.name, onclick: () => deleteApi(a.name) }, "Delete"));
    }
    body.append(el("tr", { "data-name": a.name }, name, el("td", {}, a.scenario), el("td", {}, a.protocol),
      el("td", {}, a.domains.join(", ")), el("td", {}, el("code", {}, a.base_path)),
      el("td", {}, serviceSummary(a)), el("td", {}, a.resource_group), actions));
  }
  if (!apis.length) body.append(el("tr", {}, el("td", { colspan: "8" }, "No Model APIs yet.")));
}

function renderServices() {
  const body = $("#service-table tbody");
  body.replaceChildren();
  for (const s of services) {
    const name = el("td", {}, s.name);
    if (s.managed_by_config) name.append(el("span", { class: "badge" }, "config"));
    const actions = el("td", { class: "actions" });
    if (!s.managed_by_config) {
      actions.append(
        el("button", { class: "link", onclick: () => editService(s) }, "Edit"),
        el("button", { class: "link danger", "data-delete": s.name, onclick: () => deleteService(s.name) }, "Delete"));
    }
    body.append(el("tr", { "data-name": s.name }, name, el("td", {}, s.provider),
      el("td", {}, s.base_url || "(default)"), el("td", {}, (s.api_keys || []).join(", ")),
      el("td", {}, s.resource_group), actions));
  }
  if (!services.length) body.append(el("tr", {}, el("td", { colspan: "6" }, "No services yet.")));
}

function fillSelects() {
  const scen = $("#api-scenario");
  if (!scen.options.length) {
    for (const s of catalog.scenarios) scen.append(el("option", { value: s.name }, s.name));
    fillProtocols();
  }
  const prov = $("#svc-provider");
  if (!prov.options.length) {
    for (const k of catalog.provider_kinds) prov.append(el("option", { value: k.kind }, k.kind));
  }
  const svc = $("#api-service");
  const chosen = svc.value;
  svc.replaceChildren(...services.map((s) => el("option", { value: s.name }, s.name)));
  if (chosen) svc.value = chosen;
  const dbg = $("#dbg-api");
  const current = dbg.value;
  dbg.replaceChildren(...apis.map((a) => el("option", { value: a.name }, a.name)));
  if (current) dbg.value = current;
}

// ---------- Model API form ----------

function fillProtocols() {
  const s = catalog.scenarios.find((x) => x.name === $("#api-scenario").value);
  const p = $("#api-protocol");
  const keep = p.value;
  p.replaceChildren(...s.protocols.map((x) => el("option", { value: x.name }, x.name)));
  if (s.protocols.some((x) => x.name === keep)) p.value = keep;
  showRoutes();
}

function showRoutes() {
  const s = catalog.scenarios.find((x) => x.name === $("#api-scenario").value);
  const p = s && s.protocols.find((x) => x.name === $("#api-protocol").value);
  const base = $("#api-base-path").value || "/";
  const body = $("#api-routes tbody");
  body.replaceChildren(...(p ? p.routes : []).map((r) =>
    el("tr", {}, el("td", {}, r.name), el("td", {}, el("code", {}, joinPath(base, r.path) + (r.sub_paths ? "/…" : ""))),
      el("td", {}, r.methods.join(", ") + (r.websocket ? " (WebSocket)" : "")))));
}

function showMode() {
  const single = $("#api-mode").value === "single";
  for (const e of document.querySelectorAll(".mode-single")) e.hidden = !single;
  for (const e of document.querySelectorAll(".mode-multi")) e.hidden = single;
}

$("#api-scenario").addEventListener("change", fillProtocols);
$("#api-protocol").addEventListener("change", showRoutes);
$("#api-base-path").addEventListener("input", showRoutes);
$("#api-mode").addEventListener("change", showMode);

function openApiForm(title) {
  $("#api-form-title").textContent = title;
  $("#api-form").hidden = false;
  $("#api-name").disabled = !!editing;
  fillProtocols();
  showMode();
  $("#api-name").focus();
}

$("#new-api").addEventListener("click", () => {
  editing = null;
  $("#api-form").reset();
  openApiForm("New Model API");
});

function editApi(a) {
  editing = a;
  $("#api-name").value = a.name;
  $("#api-scenario").value = a.scenario;
  fillProtocols();
  $("#api-protocol").value = a.protocol;
  $("#api-domains").value = a.domains.join(", ");
  $("#api-base-path").value = a.base_path;
  $("#api-strip").checked = a.strip_base_path;
  $("#api-mode").value = a.service.mode;
  if (a.service.mode === "single") {
    $("#api-service").value = a.service.target.service;
    $("#api-model").value = a.service.target.model || "";
  } else {
    const t = a.service.mode === "by_model" ? a.service.rules : a.service.targets;
    $("#api-targets").value = JSON.stringify(t, null, 2);
  }
  $("#api-fallback").value = a.fallback.enabled ? a.fallback.targets.map((t) => t.service).join(", ") : "";
  $("#api-fpt").value = a.first_packet_timeout_ms;
  $("#api-group").value = a.resource_group;
  openApiForm("Edit " + a.name);
}

$("#api-cancel").addEventListener("click", () => { $("#api-form").hidden = true; });

$("#api-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // Start from what GET returned, so fields the form does not show are kept.
  const a = editing ? structuredClone(editing) : {};
  delete a.managed_by_config;
  a.name = $("#api-name").value.trim();
  a.scenario = $("#api-scenario").value;
  a.protocol = $("#api-protocol").value;
  a.domains = list($("#api-domains").value);
  a.base_path = $("#api-base-path").value.trim() || "/";
  a.strip_base_path = $("#api-strip").checked;
  const mode = $("#api-mode").value;
  try {
    if (mode === "single") {
      a.service = { mode, target: { service: $("#api-service").value, model: $("#api-model").value.trim() || null } };
    } else {
      const parsed = JSON.parse($("#api-targets").value || "[]");
      a.service = mode === "by_model" ? { mode, rules: parsed } : { mode, targets: parsed };
    }
  } catch (e) {
    show("Rules / targets: " + e.message);
    return;
  }
  const fb = list($("#api-fallback").value);
  a.fallback = { enabled: fb.length > 0, targets: fb.map((s) => ({ service: s, model: null })) };
  a.first_packet_timeout_ms = Number($("#api-fpt").value || 0);
  a.resource_group = $("#api-group").value.trim() || "default";
  try {
    if (editing) await call("PUT", "/model-apis/" + encodeURIComponent(a.name), a);
    else await call("POST", "/model-apis", a);
    $("#api-form").hidden = true;
    show(`Model API ${a.name} saved.`, true);
    await load();
  } catch (e) {
    show(e.message);
  }
});

// ---------- service form ----------

$("#new-service").addEventListener("click", () => {
  editing = null;
  $("#service-form").reset();
  $("#service-form-title").textContent = "New service";
  $("#svc-name").disabled = false;
  $("#service-form").hidden = false;
});

function editService(s) {
  editing = s;
  $("#svc-name").value = s.name;
  $("#svc-name").disabled = true;
  $("#svc-provider").value = s.provider;
  $("#svc-base-url").value = s.base_url || "";
  $("#svc-keys").value = (s.api_keys || []).join("\n");
  $("#svc-connect").value = s.connect_timeout_ms;
  $("#svc-timeout").value = s.timeout_ms;
  $("#svc-group").value = s.resource_group;
  $("#service-form-title").textContent = "Edit " + s.name;
  $("#service-form").hidden = false;
}

$("#svc-cancel").addEventListener("click", () => { $("#service-form").hidden = true; });

$("#service-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // Masked keys sent back unchanged keep the stored secrets.
  const s = editing ? structuredClone(editing) : {};
  delete s.managed_by_config;
  s.name = $("#svc-name").value.trim();
  s.provider = $("#svc-provider").value;
  s.base_url = $("#svc-base-url").value.trim() || null;
  s.api_keys = list($("#svc-keys").value);
  s.connect_timeout_ms = Number($("#svc-connect").value);
  s.timeout_ms = Number($("#svc-timeout").value);
  s.resource_group = $("#svc-group").value.trim() || "default";
  try {
    if (editing) await call("PUT", "/services/" + encodeURIComponent(s.name), s);
    else await call("POST", "/services", s);
    $("#service-form").hidden = true;
    show(`Service ${s.name} saved.`, true);
    await load();
  } catch (e) {
    show(e.message);
  }
});

// ---------- delete with the typed name ----------

function confirmName(kind, name) {
  const d = $("#confirm");
  $("#confirm-title").textContent = `Delete ${kind} ${name}`;
  $("#confirm-name").textContent = name;
  const input = $("#confirm-input");
  const ok = $("#confirm-ok");
  input.value = "";
  ok.disabled = true;
  input.oninput = () => { ok.disabled = input.value !== name; };
  return new Promise((resolve) => {
    $("#confirm-cancel").onclick = () => d.close("cancel");
    d.onclose = () => resolve(d.returnValue === "ok" && input.value === name);
    d.returnValue = "";
    d.showModal();
    input.focus();
  });
}

async function deleteApi(name) {
  if (!(await confirmName("Model API", name))) return;
  try {
    await call("DELETE", `/model-apis/${encodeURIComponent(name)}?confirm=${encodeURIComponent(name)}`);
    show(`Model API ${name} deleted.`, true);
    await load();
  } catch (e) {
    show(e.message);
  }
}

async function deleteService(name) {
  if (!(await confirmName("service", name))) return;
  try {
    await call("DELETE", "/services/" + encodeURIComponent(name));
    show(`Service ${name} deleted.`, true);
    await load();
  } catch (e) {
    show(e.message);
  }
}

// ---------- debug ----------

function openDebug(name) {
  selectTab("debug");
  $("#dbg-api").value = name;
}

function parseJson(id, label) {
  const text = $(id).value.trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${label}: ${e.message}`);
  }
}

// The text a stream event adds (OpenAI chunks and Anthropic deltas).
function deltaText(eventText) {
  let out = "";
  for (const line of eventText.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") continue;
    try {
      const v = JSON.parse(data);
      out += (v.choices && v.choices[0] && v.choices[0].delta && v.choices[0].delta.content) ||
        (v.delta && v.delta.text) || "";
    } catch (_) { /* not JSON: no text */ }
  }
  return out;
}

function summary(d) {
  const s = $("#dbg-summary");
  s.replaceChildren(
    "status ", el("b", { id: "dbg-status" }, String(d.status)),
    " · service ", el("b", {}, d.service || "—"),
    " · fallbacks ", el("b", {}, String(d.fallbacks ?? 0)));
  if (d.total_ms !== undefined) {
    s.append(" · first packet ", el("b", {}, d.first_packet_ms == null ? "—" : d.first_packet_ms + " ms"),
      " · total ", el("b", {}, d.total_ms + " ms"));
  }
}

$("#debug-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("#dbg-api").value;
  const answer = $("#dbg-answer");
  const events = $("#dbg-events");
  answer.textContent = "";
  events.textContent = "";
  $("#dbg-count").textContent = "0";
  $("#dbg-response").textContent = "";
  let body;
  try {
    body = {
      model: $("#dbg-model").value.trim() || undefined,
      stream: $("#dbg-stream").checked,
      messages: [{ role: "user", content: $("#dbg-message").value }],
      parameters: parseJson("#dbg-params", "Parameters"),
      custom_parameters: parseJson("#dbg-custom", "Custom parameters"),
      domain: $("#dbg-domain").value.trim() || undefined,
    };
  } catch (e) {
    show(e.message);
    return;
  }
  show("");
  $("#dbg-summary").textContent = "Sending…";
  $("#dbg-send").disabled = true;
  try {
    // Progress arrives as server-sent events: head, event*, result.
    const r = await fetch(`${API}/model-apis/${encodeURIComponent(name)}/debug`, {
      method: "POST",
      headers: headers({ accept: "text/event-stream" }),
      body: JSON.stringify(body),
    });
    if (!r.ok) {
      const e = (await r.json().catch(() => ({}))).error || {};
      throw new Error(`${r.status} ${e.code || ""}: ${e.message || r.statusText}`);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let count = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const kind = (frame.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse(frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n"));
        if (kind === "head") summary(data);
        else if (kind === "event") {
          count += 1;
          $("#dbg-count").textContent = String(count);
          events.textContent += data + "\n\n";
          answer.textContent += deltaText(data);
        } else if (kind === "result") {
          summary(data);
          if (!data.stream_events.length) {
            const resp = data.response;
            const text = resp && resp.choices && resp.choices[0] && resp.choices[0].message
              ? resp.choices[0].message.content
              : resp && resp.content && resp.content[0] ? resp.content[0].text : JSON.stringify(resp, null, 2);
            answer.textContent = text;
          }
          $("#dbg-response").textContent = JSON.stringify(data.response, null, 2);
        } else if (kind === "error") {
          throw new Error(`${data.error.code}: ${data.error.message}`);
        }
      }
    }
  } catch (e) {
    show(e.message);
    $("#dbg-summary").textContent = "Failed.";
  } finally {
    $("#dbg-send").disabled = false;
  }
});

load();
