// FHIR River console: one module, no framework, no build. Each screen is a function of
// the URL's hash (#/batches, #/batches/<id>, #/launch, #/preview, #/fhir, #/sources)
// that reads the API with the caller's token and draws with `h` (text only: nothing
// from the API is ever parsed as HTML).

const ROLES = ["reader", "operator", "admin"];
const REFRESH_MS = 1000;
// `drawn` counts the screens drawn: a read answered after the user moved on is dropped.
const state = { config: null, tokens: null, me: null, timer: null, endpoints: null, drawn: 0 };

// --- DOM ---------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}
const main = () => document.getElementById("main");
// replaceChildren, skipping the absent (a `cond ? node : null` of the callers).
function fill(el, ...nodes) {
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}
function show(...nodes) {
  fill(main(), ...nodes);
}
function banner(message) {
  const el = document.getElementById("banner");
  el.textContent = message || "";
  el.hidden = !message;
}
const mayOperate = () => may("operator");
function may(role) {
  const held = state.me ? ROLES.indexOf(state.me.role) : -1;
  return held >= ROLES.indexOf(role);
}
function statusBadge(status, extra = "") {
  return h("span", { class: `status ${status}` }, status + extra);
}
const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { hour12: false }) : "–";
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${(minutes / 60).toFixed(1)} h`;
}

// --- the API --------------------------------------------------------------------------------
class ApiProblem extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const drawn = state.drawn;
  const body = await request(path, options);
  // A read for a screen the user has left never resolves: its late answer must not
  // draw over the screen now shown (actions, not reads, always finish).
  if ((options.method || "GET") === "GET" && drawn !== state.drawn) return new Promise(() => {});
  return body;
}

async function request(path, options) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = await accessToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.json !== undefined) headers["Content-Type"] = "application/json";
  let answer;
  try {
    answer = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
    });
  } catch (error) {
    throw new ApiProblem(0, "The FHIR River API cannot be reached: is it running? (make status)");
  }
  const body = await answer.json().catch(() => null);
  if (answer.status === 401 && state.config.auth === "oidc") {
    sessionStorage.removeItem("river.tokens");
    await login();
  }
  if (!answer.ok && !(options.accept || []).includes(answer.status)) {
    const issues = (body && body.issue) || [];
    const said = issues.map((i) => i.diagnostics).filter(Boolean).join("; ");
    const what =
      answer.status === 403
        ? `Your role (${state.me?.role || "none"}) may not do this: ${said}`
        : said || `The API answered ${answer.status}`;
    throw new ApiProblem(answer.status, what);
  }
  return body;
}

// --- signing in: authorization code with PKCE (RFC 7636) -----------------------------------
const redirectUri = () => `${location.origin}/console/`;

function randomText(bytes = 32) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(data);
}
function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
async function endpoints() {
  if (!state.endpoints) {
    const answer = await fetch(`${state.config.issuer}/.well-known/openid-configuration`);
    if (!answer.ok) throw new ApiProblem(answer.status, "The identity provider does not answer");
    state.endpoints = await answer.json();
  }
  return state.endpoints;
}

async function login() {
  const verifier = randomText(48);
  const challenge = base64url(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))),
  );
  const stateText = randomText(16);
  sessionStorage.setItem("river.login", JSON.stringify({ verifier, state: stateText, hash: location.hash }));
  const { authorization_endpoint: where } = await endpoints();
  const query = new URLSearchParams({
    response_type: "code",
    client_id: state.config.client_id,
    redirect_uri: redirectUri(),
    scope: "openid",
    state: stateText,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`${where}?${query}`);
  await new Promise(() => {}); // the page is leaving
}

async function finishLogin() {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  if (!code) return;
  const pending = JSON.parse(sessionStorage.getItem("river.login") || "null");
  sessionStorage.removeItem("river.login");
  history.replaceState(null, "", `/console/${(pending && pending.hash) || "#/batches"}`);
  if (!pending || pending.state !== query.get("state")) {
    throw new ApiProblem(400, "The sign-in answer does not match the request: sign in again");
  }
  await tokenRequest({
    grant_type: "authorization_code",
    code,
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
}

async function tokenRequest(fields) {
  const { token_endpoint: where } = await endpoints();
  const answer = await fetch(where, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: state.config.client_id, ...fields }),
  });
  if (!answer.ok) return false;
  const tokens = await answer.json();
  tokens.expires_at = Date.now() + (tokens.expires_in - 10) * 1000;
  state.tokens = tokens;
  sessionStorage.setItem("river.tokens", JSON.stringify(tokens));
  return true;
}

async function accessToken() {
  if (state.config.auth !== "oidc") return null;
  state.tokens = state.tokens || JSON.parse(sessionStorage.getItem("river.tokens") || "null");
  if (state.tokens && Date.now() < state.tokens.expires_at) return state.tokens.access_token;
  if (state.tokens && state.tokens.refresh_token) {
    const renewed = await tokenRequest({ grant_type: "refresh_token", refresh_token: state.tokens.refresh_token });
    if (renewed) return state.tokens.access_token;
  }
  await login();
  return null;
}

async function logout() {
  const tokens = state.tokens || {};
  sessionStorage.removeItem("river.tokens");
  const { end_session_endpoint: where } = await endpoints();
  const query = new URLSearchParams({
    client_id: state.config.client_id,
    post_logout_redirect_uri: redirectUri(),
    ...(tokens.id_token ? { id_token_hint: tokens.id_token } : {}),
  });
  location.assign(`${where}?${query}`);
}

function drawWho() {
  const who = document.getElementById("who");
  const me = state.me;
  fill(who, 
    h("span", {}, "Signed in as ", h("strong", {}, me.name), " · role ", h("strong", { id: "role" }, me.role || "none")),
    state.config.auth === "oidc" ? h("button", { type: "button", onclick: logout }, "Sign out") : null,
  );
  for (const link of document.querySelectorAll("nav [data-role]")) {
    link.hidden = !may(link.dataset.role);
  }
}

// --- routing -------------------------------------------------------------------------------
function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}
function go(path) {
  location.hash = path;
}

async function draw() {
  state.drawn += 1;
  clearInterval(state.timer);
  banner("");
  const { parts, params } = route();
  const screen = parts[0] || "batches";
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${screen}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  const needs = { launch: "start batches", preview: "preview (it reads the source database)" };
  if (needs[screen] && !mayOperate()) {
    const message = `Your role (${state.me.role || "none"}) may not ${needs[screen]}: an operator may.`;
    banner(message);
    show(h("h1", {}, screen === "launch" ? "Launch a batch" : "Preview"), h("p", {}, message));
    return;
  }
  try {
    if (screen === "batches" && parts[1]) await batchPage(decodeURIComponent(parts[1]), params);
    else if (screen === "batches") await batchList(params);
    else if (screen === "launch") await launchPage();
    else if (screen === "preview") await previewPage(params);
    else if (screen === "fhir" && parts[2]) await fhirResource(parts[1], decodeURIComponent(parts[2]));
    else if (screen === "fhir") await fhirSearch(params);
    else if (screen === "sources") await sourcesPage();
    else show(h("h1", {}, "Not found"), h("p", {}, "No such page: ", h("a", { href: "#/batches" }, "the batches")));
  } catch (error) {
    if (!(error instanceof ApiProblem)) throw error;
    banner(error.message);
    if (!main().querySelector("h1")) show(h("h1", {}, "Something went wrong"), h("p", {}, error.message));
  }
}

// --- batches --------------------------------------------------------------------------------
const PAGE = 20;

function batchRow(batch) {
  const resources = batch.resources || [];
  const sum = (key) => resources.reduce((total, r) => total + (r[key] || 0), 0);
  const expected = resources.every((r) => r.expected !== null && r.expected !== undefined) ? sum("expected") : null;
  const done = sum("loaded") + sum("failed");
  const link = h("a", { href: `#/batches/${encodeURIComponent(batch.batch_id)}` }, batch.batch_id);
  return h(
    "tr",
    {},
    h("td", {}, link),
    h("td", {}, statusBadge(batch.status), batch.live ? [" ", statusBadge("live")] : null),
    h("td", {}, resources.map((r) => r.resource_id).join(", ")),
    h("td", { class: "num" }, expected ? `${Math.floor((100 * done) / Math.max(expected, 1))} %` : number(done)),
    h("td", { class: "num" }, number(sum("created"))),
    h("td", { class: "num" }, number(sum("updated"))),
    h("td", { class: "num" }, number(sum("deleted"))),
    h("td", { class: "num" }, number(sum("failed"))),
    h("td", {}, when(batch.created_at)),
    h("td", { class: "num" }, duration(batch.duration_seconds)),
  );
}

function batchTable(id, caption, batches, empty) {
  const head = ["Batch", "Status", "Resources", "Progress", "Created", "Updated", "Deleted", "Failed", "Started", "Duration"];
  if (!batches.length) return h("div", { class: "card empty", id }, empty);
  return h(
    "table",
    { id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, head.map((name, n) => h("th", { scope: "col", class: n >= 3 && n !== 8 ? "num" : null }, name)))),
    h("tbody", {}, batches.map(batchRow)),
  );
}

async function batchList(params) {
  const status = params.get("status") || "";
  const offset = Number(params.get("offset") || 0);
  const query = new URLSearchParams({ limit: PAGE, offset, live: "false", ...(status ? { status } : {}) });
  show(h("h1", {}, "Batches"), h("p", { class: "muted" }, "Loading…"));
  const [live, page] = await Promise.all([api("/batches?live=true&limit=50"), api(`/batches?${query}`)]);
  const filter = h(
    "select",
    { id: "status-filter", onchange: (e) => go(`/batches${e.target.value ? `?status=${e.target.value}` : ""}`) },
    ["", "running", "completed", "failed", "canceled"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")),
  );
  const pager = h(
    "div",
    { class: "pager" },
    h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => go(`/batches?${new URLSearchParams({ ...(status ? { status } : {}), offset: Math.max(0, offset - PAGE) })}`) }, "Newer"),
    h("span", { class: "muted" }, `${offset + 1} – ${offset + page.items.length}`),
    h("button", { type: "button", class: "secondary", disabled: !page.next, onclick: () => go(`/batches?${new URLSearchParams({ ...(status ? { status } : {}), offset: offset + PAGE })}`) }, "Older"),
  );
  show(
    h("h1", {}, "Batches"),
    h("h2", {}, "Live sources"),
    batchTable("live-batches", "Live batches: each follows a connector and never ends", live.items, "No live source is followed (LIVE_SOURCES)."),
    h("h2", {}, "Batches"),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "status-filter" }, "Status"), filter),
      mayOperate() ? h("a", { href: "#/launch" }, "Launch a batch") : null),
    batchTable("batches", "Batches, newest first", page.items, status ? `No ${status} batch.` : "No batch yet: launch one."),
    pager,
  );
  state.timer = setInterval(() => refreshList(query), 3 * REFRESH_MS);
}

async function refreshList(query) {
  const body = main().querySelector("#batches tbody");
  if (!body) return;
  try {
    const page = await api(`/batches?${query}`);
    fill(body, ...page.items.map(batchRow));
  } catch (error) {
    banner(error.message);
  }
}

function resourceCard(resource, rates) {
  const expected = resource.expected;
  const bar = (name, value) => [
    h("span", {}, name),
    h("progress", { max: Math.max(expected || 0, value || 0, 1), value: value || 0, "aria-label": `${resource.resource_id} ${name}` }),
    h("span", { class: "num" }, expected === null || expected === undefined ? number(value) : `${number(value)} / ${number(expected)}`),
  ];
  const rate = rates[resource.resource_id];
  return h(
    "div",
    { class: "card resource", "data-resource": resource.resource_id },
    h("div", { class: "row center" },
      h("h3", { class: "flush" }, resource.resource_id),
      statusBadge(resource.status, resource.stalled_at_stage ? ` at ${resource.stalled_at_stage}` : ""),
      h("span", { class: "muted" }, rate ? `${number(Math.round(rate))} / s` : ""),
    ),
    h("div", { class: "bars" },
      bar("expected", expected),
      bar("extracted", resource.extracted),
      bar("transformed", resource.transformed),
      bar("loaded", resource.loaded),
    ),
    h("p", { class: "muted counts" },
      `created ${number(resource.created)} · updated ${number(resource.updated)} · deleted ${number(resource.deleted)} · failed ${number(resource.failed)}`),
    resource.reason || resource.error ? h("p", { class: "reason" }, resource.reason || resource.error) : null,
  );
}

async function batchPage(batchId, params) {
  const batch = await api(`/batches/${encodeURIComponent(batchId)}`);
  const rates = {};
  let last = { at: Date.now(), loaded: Object.fromEntries(batch.resources.map((r) => [r.resource_id, r.loaded])) };
  const header = h("div", { id: "batch-head" });
  const cards = h("div", { id: "resources" });
  const errors = h("div", { id: "errors" });
  const drawHead = (b) =>
    fill(header, 
      h("div", { class: "row" },
        h("span", {}, "Status ", statusBadge(b.status)), b.live ? statusBadge("live") : null,
        h("span", { class: "muted" }, `started ${when(b.created_at)} · ${duration(b.duration_seconds)}`),
        b.retry_of ? h("span", {}, "retry of ", h("a", { href: `#/batches/${encodeURIComponent(b.retry_of)}` }, b.retry_of)) : null,
        actions(b)),
      b.reason ? h("p", { class: "reason" }, b.reason) : null,
    );
  const drawCards = (b) => fill(cards, ...b.resources.map((r) => resourceCard(r, rates)));
  show(h("h1", {}, "Batch ", h("code", {}, batchId)), header, h("h2", {}, "Resources"), cards, h("h2", {}, "Errors"), errors);
  drawHead(batch);
  drawCards(batch);
  await errorTable(errors, batch, params);
  if (batch.status === "running" || batch.status === "degraded" || batch.live) {
    state.timer = setInterval(async () => {
      try {
        const now = await api(`/batches/${encodeURIComponent(batchId)}`);
        const seconds = (Date.now() - last.at) / 1000;
        for (const r of now.resources) rates[r.resource_id] = Math.max(0, (r.loaded - (last.loaded[r.resource_id] || 0)) / seconds);
        last = { at: Date.now(), loaded: Object.fromEntries(now.resources.map((r) => [r.resource_id, r.loaded])) };
        drawHead(now);
        drawCards(now);
        const failed = now.resources.reduce((t, r) => t + r.failed, 0);
        if (failed !== Number(errors.dataset.failed || 0)) await errorTable(errors, now, params);
        if (!(now.status === "running" || now.status === "degraded" || now.live)) clearInterval(state.timer);
      } catch (error) {
        banner(error.message);
      }
    }, REFRESH_MS);
  }
}

function actions(batch) {
  if (!mayOperate() || batch.live) return null;
  const id = encodeURIComponent(batch.batch_id);
  const failed = batch.resources.reduce((t, r) => t + r.failed, 0);
  return h("span", { class: "row" },
    batch.status === "running"
      ? h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Cancel batch ${batch.batch_id}? Its remaining instances will not be loaded.`)) return;
          await api(`/batches/${id}`, { method: "DELETE", accept: [409] }).catch((e) => banner(e.message));
          draw();
        } }, "Cancel batch")
      : null,
    batch.status !== "running" && failed > 0
      ? h("button", { type: "button", onclick: async () => {
          if (!confirm(`Retry the ${failed} failed instance(s) of batch ${batch.batch_id}?`)) return;
          try {
            const retry = await api(`/batches/${id}/retry`, { method: "POST", json: {} });
            go(`/batches/${encodeURIComponent(retry.batch_id)}`);
          } catch (error) {
            banner(error.message);
          }
        } }, `Retry ${failed} failed`)
      : null,
  );
}

async function errorTable(container, batch, params) {
  const resource = container.dataset.resource ?? params.get("resource") ?? "";
  const stage = container.dataset.stage ?? params.get("stage") ?? "";
  const offset = Number(container.dataset.offset || 0);
  const query = new URLSearchParams({ limit: PAGE, offset, ...(resource ? { resource_id: resource } : {}), ...(stage ? { stage } : {}) });
  const page = await api(`/batches/${encodeURIComponent(batch.batch_id)}/errors?${query}`);
  container.dataset.failed = batch.resources.reduce((t, r) => t + r.failed, 0);
  const refilter = (key) => (e) => {
    container.dataset[key] = e.target.value;
    container.dataset.offset = 0;
    errorTable(container, batch, params);
  };
  const filters = h("div", { class: "row" },
    h("div", {}, h("label", { for: "error-resource" }, "Resource"),
      h("select", { id: "error-resource", onchange: refilter("resource") },
        h("option", { value: "" }, "every resource"),
        batch.resources.map((r) => h("option", { value: r.resource_id, selected: r.resource_id === resource }, r.resource_id)))),
    h("div", {}, h("label", { for: "error-stage" }, "Stage"),
      h("select", { id: "error-stage", onchange: refilter("stage") },
        ["", "extract", "transform", "load"].map((s) => h("option", { value: s, selected: s === stage }, s || "every stage")))),
    h("span", { class: "muted" }, `${number(page.total)} error(s)`));
  const move = (to) => () => {
    container.dataset.offset = Math.max(0, to);
    errorTable(container, batch, params);
  };
  const rows = page.items.map((e) =>
    h("tr", {},
      h("td", {}, e.resource_id || "–"),
      h("td", {}, e.primary_key_value === null ? "–" : e.resource_id && mayOperate()
        ? h("a", { href: `#/preview?resource=${encodeURIComponent(e.resource_id)}&keys=${encodeURIComponent(e.primary_key_value)}` }, String(e.primary_key_value))
        : String(e.primary_key_value)),
      h("td", {}, e.stage),
      h("td", {}, e.message)));
  fill(container, 
    filters,
    page.total
      ? h("table", { id: "error-table" }, h("caption", {}, "Errors of the batch"),
          h("thead", {}, h("tr", {}, ["Resource", "Primary key", "Stage", "Message"].map((n) => h("th", { scope: "col" }, n)))),
          h("tbody", {}, rows))
      : h("div", { class: "card empty" }, "No error."),
    page.total > PAGE
      ? h("div", { class: "pager" },
          h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: move(offset - PAGE) }, "Previous errors"),
          h("span", { class: "muted" }, `${offset + 1} – ${offset + page.items.length} of ${number(page.total)}`),
          h("button", { type: "button", class: "secondary", disabled: !page.next, onclick: move(offset + PAGE) }, "Next errors"))
      : null,
  );
}

// --- launch ---------------------------------------------------------------------------------
let resourcesCache = null;
async function mappingResources() {
  resourcesCache = resourcesCache || (await api("/resources")).items;
  return resourcesCache;
}

async function launchPage() {
  const resources = await mappingResources();
  const search = h("input", { type: "search", id: "resource-search", placeholder: "id, label or resource type" });
  const boxes = resources.map((r) =>
    h("label", { "data-text": `${r.resource_id} ${r.label || ""} ${r.resource_type}`.toLowerCase() },
      h("input", { type: "checkbox", value: r.resource_id, name: "resource" }),
      h("span", {}, h("strong", {}, r.resource_type), " ", r.label || "", " ", h("code", { class: "muted" }, r.resource_id))));
  const picker = h("div", { class: "picker", role: "group", "aria-label": "Resources of the mappings" }, boxes);
  search.addEventListener("input", () => {
    const wanted = search.value.trim().toLowerCase();
    for (const box of boxes) box.hidden = wanted && !box.dataset.text.includes(wanted);
  });
  const keys = h("textarea", { id: "keys", placeholder: "Empty: every row. Else one value per line, or separated by commas." });
  const start = h("button", { type: "submit" }, "Start the batch");
  const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      const chosen = [...picker.querySelectorAll("input:checked")].map((b) => b.value);
      if (!chosen.length) return banner("Pick at least one resource.");
      const values = keys.value.split(/[\n,]/).map((v) => v.trim()).filter(Boolean);
      const body = { resource_ids: chosen };
      if (values.length) body.primary_key_values = values.map((v) => (/^-?\d+$/.test(v) ? Number(v) : v));
      start.disabled = true;
      try {
        const batch = await api("/batch", { method: "POST", json: body });
        go(`/batches/${encodeURIComponent(batch.batch_id)}`);
      } catch (error) {
        banner(error.message);
        start.disabled = false;
      }
    } },
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "resource-search" }, "Find resources"), search),
      h("button", { type: "button", class: "secondary", onclick: () => boxes.filter((b) => !b.hidden).forEach((b) => (b.querySelector("input").checked = true)) }, "Select all shown"),
      h("button", { type: "button", class: "secondary", onclick: () => boxes.forEach((b) => (b.querySelector("input").checked = false)) }, "Select none")),
    h("p", { class: "muted" }, `${resources.length} resource(s) in the loaded mappings`),
    picker,
    h("label", { for: "keys", class: "spaced" }, "Primary key values (optional)"),
    keys,
    h("p", {}, start));
  show(h("h1", {}, "Launch a batch"), form);
}

// --- preview --------------------------------------------------------------------------------
async function previewPage(params) {
  const resources = await mappingResources();
  const chosen = params.get("resource") || (resources[0] && resources[0].resource_id) || "";
  const select = h("select", { id: "preview-resource" },
    resources.map((r) => h("option", { value: r.resource_id, selected: r.resource_id === chosen }, `${r.resource_type} · ${r.label || r.resource_id}`)));
  const keys = h("input", { type: "text", id: "preview-keys", value: params.get("keys") || "", placeholder: "e.g. 10006, 10011" });
  const firstRows = h("div", { class: "keys", "aria-label": "First primary key values" });
  const result = h("div", { id: "preview-result" });
  const run = async () => {
    const values = keys.value.split(",").map((v) => v.trim()).filter(Boolean);
    if (!values.length) return;
    history.replaceState(null, "", `#/preview?resource=${encodeURIComponent(select.value)}&keys=${encodeURIComponent(keys.value)}`);
    fill(result, h("p", { class: "muted" }, "Running…"));
    const answer = await api("/preview", {
      method: "POST",
      json: { resource_id: select.value, primary_key_values: values.map((v) => (/^-?\d+$/.test(v) ? Number(v) : v)) },
    }).catch((error) => {
      banner(error.message);
      return null;
    });
    if (answer) fill(result, ...previewResult(answer));
  };
  const browse = async () => {
    const found = await api(`/resources/${encodeURIComponent(select.value)}/keys?limit=20`);
    fill(firstRows, 
      found.primary_key_values.length ? h("span", { class: "muted" }, "First rows:") : h("span", { class: "muted" }, "The primary table has no row."),
      ...found.primary_key_values.map((value) =>
        h("button", { type: "button", class: "secondary", onclick: () => { keys.value = String(value); run(); } }, String(value))));
  };
  show(
    h("h1", {}, "Preview"),
    h("form", { class: "card", onsubmit: (e) => { e.preventDefault(); run(); } },
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "preview-resource" }, "Resource"), select),
        h("div", {}, h("label", { for: "preview-keys" }, "Primary key values"), keys),
        h("button", { type: "submit" }, "Preview"),
        h("button", { type: "button", class: "secondary", onclick: browse }, "Browse first rows")),
      firstRows),
    result,
  );
  if (keys.value) await run();
}

function copyButton(label, value) {
  return h("button", { type: "button", class: "secondary", onclick: async (e) => {
      await navigator.clipboard.writeText(JSON.stringify(value, null, 2)).catch(() => {});
      e.target.textContent = "Copied";
    } }, label);
}

function previewResult(answer) {
  const records = answer.records || [];
  const sourceTables = records.map((record) => {
    const labels = Object.keys(record.columns);
    const rows = Math.max(0, ...labels.map((l) => record.columns[l].length));
    return h("table", { class: "source-record" },
      h("caption", {}, `Source record ${record.primary_key_value}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Column"), [...Array(rows).keys()].map((n) => h("th", { scope: "col" }, rows > 1 ? `row ${n + 1}` : "value")))),
      h("tbody", {}, labels.map((label) =>
        h("tr", {}, h("th", { scope: "row" }, label), record.columns[label].map((v) => h("td", {}, v === null ? "null" : String(v)))))));
  });
  const messages = (title, items) =>
    items.length
      ? h("div", { class: "card" }, h("h3", { class: "flush-top" }, title),
          h("ul", {}, items.map((m) => h("li", {}, `${m.primary_key_value ?? ""}: ${m.message}`))))
      : null;
  return [
    messages("Errors", answer.errors || []),
    messages("Warnings", answer.warnings || []),
    h("div", { class: "cols" },
      h("section", { "aria-label": "Source" }, h("h2", {}, "Source"),
        sourceTables.length ? sourceTables : h("div", { class: "card empty" }, "No row read.")),
      h("section", { "aria-label": "FHIR" }, h("div", { class: "row" }, h("h2", {}, "FHIR"), copyButton("Copy JSON", answer.instances)),
        answer.instances.length ? h("pre", { class: "json", id: "preview-json" }, JSON.stringify(answer.instances, null, 2))
          : h("div", { class: "card empty" }, "No resource."))),
  ];
}

// --- FHIR browser ---------------------------------------------------------------------------
const RESOURCE_TAG = "http://terminology.arkhn.org/CodeSystem/resource";

async function fhirSearch(params) {
  const resources = await mappingResources();
  const types = [...new Set(resources.map((r) => r.resource_type))].sort();
  const type = params.get("type") || types[0] || "Patient";
  const tag = params.get("tag") || "";
  const id = params.get("id") || "";
  const offset = Number(params.get("offset") || 0);
  const typeInput = h("input", { type: "text", id: "fhir-type", value: type, list: "fhir-types" });
  const tagSelect = h("select", { id: "fhir-tag" }, h("option", { value: "" }, "any mapping resource"),
    resources.filter((r) => r.resource_type === type || !type).map((r) => h("option", { value: r.resource_id, selected: r.resource_id === tag }, `${r.label || r.resource_id}`)));
  const idInput = h("input", { type: "text", id: "fhir-id", value: id });
  const form = h("form", { class: "card", onsubmit: (e) => {
      e.preventDefault();
      if (idInput.value.trim()) return go(`/fhir/${encodeURIComponent(typeInput.value.trim())}/${encodeURIComponent(idInput.value.trim())}`);
      go(`/fhir?${new URLSearchParams({ type: typeInput.value.trim(), ...(tagSelect.value ? { tag: tagSelect.value } : {}) })}`);
    } },
    h("datalist", { id: "fhir-types" }, types.map((t) => h("option", { value: t }))),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "fhir-type" }, "Resource type"), typeInput),
      h("div", {}, h("label", { for: "fhir-tag" }, "Mapping resource (_tag)"), tagSelect),
      h("div", {}, h("label", { for: "fhir-id" }, "Id (opens it)"), idInput),
      h("button", { type: "submit" }, "Search")));
  show(h("h1", {}, "FHIR resources"), form, h("p", { class: "muted" }, "Searching…"));
  const query = new URLSearchParams({ _count: PAGE, _offset: offset, ...(tag ? { _tag: `${RESOURCE_TAG}|${tag}` } : {}) });
  const bundle = await api(`/fhir/${encodeURIComponent(type)}?${query}`);
  const entries = bundle.entry || [];
  const move = (to) => () => go(`/fhir?${new URLSearchParams({ type, ...(tag ? { tag } : {}), offset: Math.max(0, to) })}`);
  show(
    h("h1", {}, "FHIR resources"),
    form,
    h("p", { class: "muted" }, `${number(bundle.total)} ${type} resource(s)`),
    entries.length
      ? h("table", { id: "fhir-results" }, h("caption", {}, `${type}, page from ${offset + 1}`),
          h("thead", {}, h("tr", {}, ["Id", "Last updated", "Mapping resource"].map((n) => h("th", { scope: "col" }, n)))),
          h("tbody", {}, entries.map(({ resource }) =>
            h("tr", {},
              h("td", {}, h("a", { href: `#/fhir/${resource.resourceType}/${encodeURIComponent(resource.id)}` }, resource.id)),
              h("td", {}, when(resource.meta?.lastUpdated)),
              h("td", {}, (resource.meta?.tag || []).filter((t) => t.system === RESOURCE_TAG).map((t) => t.code).join(", "))))))
      : h("div", { class: "card empty" }, "No resource found."),
    h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: move(offset - PAGE) }, "Previous page"),
      h("button", { type: "button", class: "secondary", disabled: offset + entries.length >= (bundle.total || 0), onclick: move(offset + PAGE) }, "Next page")),
  );
}

function jsonWithLinks(value) {
  // Pretty JSON where each "reference": "Type/id" is a link to that resource.
  const text = JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json", id: "fhir-json" });
  const pattern = /("reference": ")([A-Z][A-Za-z]+)\/([^"]+)(")/g;
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    pre.append(text.slice(at, match.index) + match[1]);
    pre.append(h("a", { href: `#/fhir/${match[2]}/${encodeURIComponent(match[3])}` }, `${match[2]}/${match[3]}`));
    pre.append(match[4]);
    at = match.index + match[0].length;
  }
  pre.append(text.slice(at));
  return pre;
}

async function fhirResource(type, id) {
  const resource = await api(`/fhir/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
  show(
    h("h1", {}, `${type}/${id}`),
    h("div", { class: "row" }, h("a", { href: `#/fhir?type=${encodeURIComponent(type)}` }, `All ${type} resources`), copyButton("Copy JSON", resource)),
    jsonWithLinks(resource),
  );
}

// --- sources --------------------------------------------------------------------------------
async function sourcesPage() {
  const [health, live, resources] = await Promise.all([
    api("/health", { accept: [503] }),
    api("/batches?live=true&limit=50"),
    mappingResources(),
  ]);
  const liveOf = Object.fromEntries(live.items.map((b) => [b.batch_id, b]));
  const connectors = Object.entries(health.connectors || {}).filter(([name]) => name !== "ok" && name !== "error");
  const slots = health.replication_slots || {};
  const services = Object.entries(health.services || {}).filter(([name]) => name !== "ok" && name !== "error");
  show(
    h("h1", {}, "Sources"),
    health.problems && health.problems.length
      ? h("div", { class: "card" }, h("h2", { class: "flush-top" }, "Problems"), h("ul", {}, health.problems.map((p) => h("li", {}, p))))
      : h("p", {}, h("span", { class: "status ok" }, "ok"), " every part answers"),
    h("h2", {}, "Connectors"),
    connectors.length
      ? h("table", { id: "connectors" }, h("caption", {}, "Kafka Connect connectors of LIVE_SOURCES"),
          h("thead", {}, h("tr", {}, ["Connector", "State", "Tasks", "Live batch", "Replication lag"].map((n) => h("th", { scope: "col" }, n)))),
          h("tbody", {}, connectors.map(([name, part]) => {
            const batch = liveOf[`live-${name}`];
            const slot = Object.values(slots).find((s) => s && s.connector === name);
            return h("tr", { "data-connector": name },
              h("td", {}, name),
              h("td", {}, h("span", { class: `status ${part.ok ? "ok" : "down"}` }, part.state)),
              h("td", {}, (part.tasks || []).map((t) => `${t.id}: ${t.state}${t.trace ? ` (${t.trace})` : ""}`).join("; ") || "none"),
              h("td", {}, batch ? h("a", { href: `#/batches/${encodeURIComponent(batch.batch_id)}` }, batch.batch_id) : "–", batch ? [" ", statusBadge(batch.status)] : null),
              h("td", {}, slot && slot.retained_bytes !== undefined ? `${number(slot.retained_bytes)} bytes of WAL` : "–"));
          })))
      : h("div", { class: "card empty" }, "No live source is followed (LIVE_SOURCES is empty)."),
    h("h2", {}, "Services"),
    h("table", {}, h("caption", {}, "Consumer groups of the pipeline"),
      h("thead", {}, h("tr", {}, ["Service", "State", "Processes"].map((n) => h("th", { scope: "col" }, n)))),
      h("tbody", {}, services.map(([name, part]) =>
        h("tr", {}, h("td", {}, name), h("td", {}, h("span", { class: `status ${part.ok ? "ok" : "down"}` }, part.ok ? "up" : "down")), h("td", { class: "num" }, number(part.processes)))))),
    h("h2", {}, "Mappings loaded"),
    h("table", { id: "mappings" }, h("caption", {}, `${resources.length} mapping resource(s)`),
      h("thead", {}, h("tr", {}, ["Resource id", "Type", "Label"].map((n) => h("th", { scope: "col" }, n)))),
      h("tbody", {}, resources.map((r) => h("tr", {}, h("td", {}, h("code", {}, r.resource_id)), h("td", {}, r.resource_type), h("td", {}, r.label || ""))))),
  );
}

// --- start ------------------------------------------------------------------------------------
async function start() {
  try {
    state.config = await (await fetch("/console/config.json")).json();
  } catch (error) {
    banner("The FHIR River API cannot be reached: is it running? (make status)");
    show(h("h1", {}, "FHIR River"), h("p", {}, "The API does not answer."));
    return;
  }
  try {
    if (state.config.auth === "oidc") {
      await finishLogin();
      if (!(await accessToken())) return;
    }
    state.me = await api("/me");
  } catch (error) {
    banner(error.message);
    show(h("h1", {}, "FHIR River"), h("p", {}, error.message));
    return;
  }
  drawWho();
  if (!location.hash) history.replaceState(null, "", "#/batches");
  window.addEventListener("hashchange", () => {
    draw();
    main().focus();
  });
  await draw();
}

start();
