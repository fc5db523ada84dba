// The Chronik console: renders the view named in the URL fragment from the JSON APIs under
// /api/v1/ and redraws it on the server-sent events of /api/v1/events. No framework, no build.
// Every rendered view sets <body data-view="..."> and data-ready="1", which the tests wait for.
"use strict";

const page = document.getElementById("page");
const live = document.getElementById("live");
let current = { view: null, args: [] };
let refreshTimer = null;
let lastOverview = null;

// ----- small DOM helpers (no innerHTML: every value is text) -----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function table(headers, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, headers.map((x) => {
      const [label, cls] = Array.isArray(x) ? x : [x, null];
      return h("th", { class: cls }, label);
    }))),
    h("tbody", {}, rows));
}

function num(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); }

function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
}

function ago(ms) {
  if (!ms) return "not yet";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s + " s ago";
}

function card(label, value, bad) {
  return h("div", { class: "card" + (bad ? " bad" : ""), "data-card": label },
    h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

function badge(text) { return h("span", { class: "badge " + text }, text); }

function link(href, text) { return h("a", { href }, text); }

function enc(s) { return encodeURIComponent(s); }

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (response.status === 401) { window.location = "/login"; throw new Error("not logged in"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

// ----- views -----

function renderOverview(o) {
  lastOverview = o;
  const fenced = o.brokers.filter((b) => b.state !== "unfenced").length;
  const controllers = o.controllers.map((c) => h("tr", { "data-controller": c.node_id, "data-role": c.role },
    h("td", {}, c.node_id, c.is_self ? h("span", { class: "muted" }, " (this one)") : null),
    h("td", {}, c.address),
    h("td", {}, badge(c.role)),
    h("td", { class: "num" }, c.term ? c.term : "–"),
    h("td", { class: "num" }, c.applied_index >= 0 ? num(c.applied_index) : "–"),
    h("td", { class: "num" }, c.lag === null ? "–" : num(c.lag))));
  const brokers = o.brokers.map((b) => h("tr", {
    "data-broker": b.broker_id, "data-state": b.state, "data-leaders": b.leader_count,
  },
    h("td", {}, b.broker_id),
    h("td", {}, badge(b.state), b.offline_log_dir ? h("span", { class: "bad" }, " log dir offline") : null),
    h("td", { class: "num" }, b.broker_epoch),
    h("td", { class: "num leaders" }, b.leader_count),
    h("td", {}, b.endpoints.join(", ")),
    h("td", {}, b.rack || "–"),
    h("td", { class: "num" }, b.disk ? bytes(b.disk.log_bytes) : "–"),
    h("td", { class: "num" }, b.disk && b.disk.total_bytes !== null
      ? bytes(b.disk.total_bytes - b.disk.usable_bytes) + " / " + bytes(b.disk.total_bytes) : "–")));
  return [
    h("h1", {}, "Cluster ", h("code", {}, o.cluster_id || "(bootstrapping)")),
    h("div", { class: "cards" },
      card("brokers", o.brokers.length),
      card("fenced or stopping", fenced, fenced > 0),
      card("topics", o.topic_count),
      card("partitions", o.partition_count),
      card("under-replicated", o.under_replicated_partitions, o.under_replicated_partitions > 0),
      card("leaderless", o.leaderless_partitions, o.leaderless_partitions > 0)),
    h("h2", {}, "Controllers"),
    table(["node", "address", "role", ["term", "num"], ["applied index", "num"], ["lag (entries)", "num"]],
      controllers, { id: "controllers" }),
    h("p", { class: "muted" }, "Metadata offset ", num(o.metadata_offset),
      " as applied by controller ", o.node_id, ". Lag is known for every controller on the active one."),
    h("h2", {}, "Brokers"),
    table(["id", "state", ["epoch", "num"], ["leaders", "num"], "endpoints", "rack",
      ["log size", "num"], ["disk used / total", "num"]], brokers, { id: "brokers" }),
    h("p", { class: "muted" }, "Disk usage sampled by controller ", o.sampled_by, " ", ago(o.sampled_at_ms), "."),
  ];
}

async function viewOverview() { return renderOverview(await api("/api/v1/overview")); }

async function viewTopics() {
  const t = await api("/api/v1/topics");
  const rows = t.topics.map((x) => h("tr", { "data-topic": x.name },
    h("td", {}, link("#/topics/" + enc(x.name), x.name)),
    h("td", { class: "num" }, x.partitions),
    h("td", { class: "num" }, x.replication_factor),
    h("td", { class: "num" + (x.under_replicated ? " bad" : "") }, x.under_replicated),
    h("td", { class: "num" + (x.leaderless ? " bad" : "") }, x.leaderless),
    h("td", { class: "num" }, bytes(x.size_bytes)),
    h("td", {}, h("code", {}, x.topic_id))));
  return [
    h("h1", {}, "Topics"),
    table(["name", ["partitions", "num"], ["replication", "num"], ["under-replicated", "num"],
      ["leaderless", "num"], ["size", "num"], "topic id"], rows, { id: "topics" }),
    h("p", { class: "muted" }, "Sizes sampled ", ago(t.sampled_at_ms), "."),
  ];
}

async function viewTopic(name) {
  const t = await api("/api/v1/topics/" + enc(name));
  const isr = (p) => p.isr.map((b) => b).join(", ");
  const rows = t.partitions.map((p) => h("tr", {
    "data-partition": p.partition, "data-leader": p.leader, "data-high-watermark": p.high_watermark,
  },
    h("td", {}, p.partition),
    h("td", { class: "num leader" + (p.leader < 0 ? " bad" : "") }, p.leader < 0 ? "none" : p.leader),
    h("td", { class: "num" }, p.leader_epoch),
    h("td", {}, p.replicas.join(", ")),
    h("td", { class: p.under_replicated ? "bad" : "" }, isr(p)),
    h("td", { class: "num" }, num(p.log_start_offset)),
    h("td", { class: "num hw" }, num(p.high_watermark)),
    h("td", { class: "num" }, bytes(p.size_bytes)),
    h("td", {}, link("#/topics/" + enc(name) + "/" + p.partition + "/records", "latest records"))));
  const configs = Object.entries(t.configs).map(([k, v]) => h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, v)));
  const defaults = Object.entries(t.cluster_configs).map(([k, v]) => h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, v)));
  return [
    h("h1", {}, "Topic ", h("code", {}, t.name)),
    h("p", { class: "muted" }, "id ", h("code", {}, t.topic_id), " · replication factor ", t.replication_factor),
    h("h2", {}, "Partitions"),
    table(["partition", ["leader", "num"], ["leader epoch", "num"], "replicas", "ISR", ["log start", "num"],
      ["high watermark", "num"], ["size (leader)", "num"], ""], rows, { id: "partitions" }),
    t.errors.length ? h("p", { class: "error" }, t.errors.join("; ")) : null,
    h("h2", {}, "Configs set on the topic"),
    configs.length ? table(["name", "value"], configs, { id: "configs" }) : h("p", { class: "muted" }, "None: cluster defaults apply."),
    h("h2", {}, "Cluster defaults"),
    table(["name", "value"], defaults, { id: "cluster-configs" }),
  ];
}

function payloadText(p) {
  if (p === null || p === undefined) return h("span", { class: "muted" }, "null");
  if (p.base64 !== undefined) return h("span", {}, h("span", { class: "muted" }, "base64 "), h("code", {}, p.base64));
  const text = p.text;
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try { return h("pre", { class: "json" }, JSON.stringify(JSON.parse(trimmed), null, 2)); } catch (_) { /* not JSON */ }
  }
  return h("pre", {}, text);
}

function inlinePayload(p) {
  if (p === null || p === undefined) return h("span", { class: "muted" }, "null");
  if (p.base64 !== undefined) return h("code", {}, "base64 " + p.base64);
  return h("code", {}, p.text);
}

async function viewRecords(name, partition) {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const limit = params.get("limit") || "20";
  const r = await api("/api/v1/topics/" + enc(name) + "/partitions/" + partition + "/records?limit=" + enc(limit));
  const rows = r.records.map((rec) => h("tr", { "data-offset": rec.offset },
    h("td", { class: "num" }, rec.offset),
    h("td", {}, new Date(rec.timestamp_ms).toISOString(), h("div", { class: "muted" }, rec.timestamp_type)),
    h("td", { class: "key" }, payloadText(rec.key)),
    h("td", { class: "value" }, payloadText(rec.value)),
    h("td", { class: "headers" }, rec.headers.length
      ? rec.headers.map((x) => h("div", {}, h("code", {}, x.key), ": ", inlinePayload(x.value)))
      : h("span", { class: "muted" }, "none"))));
  const input = h("input", { type: "number", min: 1, max: 500, value: limit, id: "limit" });
  const go = () => { window.location.hash = "#/topics/" + enc(name) + "/" + partition + "/records?limit=" + enc(input.value); };
  return [
    h("h1", {}, "Latest records of ", link("#/topics/" + enc(name), name), "-", partition),
    h("div", { class: "controls" }, h("label", { for: "limit" }, "records"), input,
      h("button", { type: "button", onclick: go }, "Show"),
      h("button", { type: "button", onclick: () => render() }, "Reload")),
    h("p", { class: "muted" }, "Leader ", r.leader, " · log start ", num(r.log_start_offset),
      " · high watermark ", num(r.high_watermark), " · ", r.records.length, " record(s)"),
    table([["offset", "num"], "timestamp", "key", "value", "headers"], rows, { id: "records" }),
  ];
}

async function viewGroups() {
  const g = await api("/api/v1/groups");
  const rows = g.groups.map((x) => h("tr", { "data-group": x.group_id },
    h("td", {}, link("#/groups/" + enc(x.group_id), x.group_id)),
    h("td", {}, x.state ? badge(x.state) : "–"),
    h("td", {}, x.protocol_type || "–"),
    h("td", { class: "num" }, x.coordinator),
    h("td", { class: "num" }, num(x.total_lag))));
  return [
    h("h1", {}, "Consumer groups"),
    table(["group", "state", "protocol", ["coordinator", "num"], ["lag (sampled)", "num"]], rows, { id: "groups" }),
    g.errors.length ? h("p", { class: "error" }, g.errors.join("; ")) : null,
    h("p", { class: "muted" }, "Lag sampled ", ago(g.sampled_at_ms), "."),
  ];
}

const COLORS = ["#2f6fde", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#c53030", "#718096"];

function lagGraph(history, intervalMs) {
  const series = history.filter((s) => s.points.length > 0);
  if (series.length === 0) return h("p", { class: "muted", id: "lag-graph-empty" }, "No samples yet.");
  const W = 900, H = 240, L = 60, R = 12, T = 12, B = 28;
  const all = series.flatMap((s) => s.points);
  const t0 = Math.min(...all.map((p) => p.at_ms)), t1 = Math.max(...all.map((p) => p.at_ms));
  const max = Math.max(1, ...all.map((p) => p.lag));
  const x = (t) => L + (t1 === t0 ? (W - L - R) : (t - t0) / (t1 - t0) * (W - L - R));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const lines = series.map((s, i) => svg("polyline", {
    fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2,
    "data-series": s.topic + "-" + s.partition,
    points: s.points.map((p) => x(p.at_ms).toFixed(1) + "," + y(p.lag).toFixed(1)).join(" "),
  }));
  const graph = svg("svg", { class: "lag", id: "lag-graph", width: W, height: H, viewBox: `0 0 ${W} ${H}` },
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#aab" }),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#aab" }),
    svg("text", { x: L - 6, y: T + 10, "text-anchor": "end" }, num(max)),
    svg("text", { x: L - 6, y: H - B, "text-anchor": "end" }, "0"),
    svg("text", { x: L, y: H - 8 }, new Date(t0).toLocaleTimeString()),
    svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()),
    lines);
  const legend = h("div", { class: "legend" }, series.map((s, i) => {
    const el = h("span", {}, s.topic + "-" + s.partition);
    el.style.setProperty("--c", COLORS[i % COLORS.length]);
    return el;
  }));
  return [graph, legend, h("p", { class: "muted" }, "One point every ", intervalMs ? intervalMs / 1000 + " s" : "–",
    " per partition, kept in memory by this controller.")];
}

async function viewGroup(id) {
  const g = await api("/api/v1/groups/" + enc(id));
  const members = g.members.map((m) => h("tr", { "data-member": m.member_id },
    h("td", {}, h("code", {}, m.member_id)),
    h("td", {}, m.client_id), h("td", {}, m.client_host), h("td", {}, m.group_instance_id || "–"),
    h("td", {}, m.assignment.map((a) => a.topic + ": " + a.partitions.join(", ")).join("; ") || "–")));
  const partitions = g.partitions.map((p) => h("tr", { "data-topic": p.topic, "data-partition": p.partition, "data-lag": p.lag },
    h("td", {}, link("#/topics/" + enc(p.topic), p.topic)),
    h("td", { class: "num" }, p.partition),
    h("td", { class: "num" }, num(p.committed_offset)),
    h("td", { class: "num" }, num(p.high_watermark)),
    h("td", { class: "num lag" }, num(p.lag)),
    h("td", {}, p.member_id ? h("code", {}, p.member_id) : "–")));
  return [
    h("h1", {}, "Group ", h("code", {}, g.group_id), " ", badge(g.state)),
    h("p", { class: "muted" }, "protocol ", g.protocol_type || "–", " / ", g.protocol || "–", " · coordinator broker ", g.coordinator),
    h("h2", {}, "Members"),
    members.length ? table(["member", "client id", "host", "instance id", "assignment"], members, { id: "members" })
      : h("p", { class: "muted" }, "No members."),
    h("h2", {}, "Offsets and lag"),
    table(["topic", ["partition", "num"], ["committed", "num"], ["high watermark", "num"], ["lag", "num"], "member"],
      partitions, { id: "group-partitions" }),
    h("h2", {}, "Lag history (controller " + g.sampled_by + ")"),
    lagGraph(g.history, g.sample_interval_ms),
    g.errors.length ? h("p", { class: "error" }, g.errors.join("; ")) : null,
  ];
}

// ----- routing and live updates -----

function route() {
  const path = (window.location.hash.replace(/^#/, "").split("?")[0] || "/").split("/").filter(Boolean).map(decodeURIComponent);
  if (path[0] === "topics" && path.length === 1) return { view: "topics", args: [] };
  if (path[0] === "topics" && path.length === 2) return { view: "topic", args: [path[1]] };
  if (path[0] === "topics" && path.length === 4 && path[3] === "records") return { view: "records", args: [path[1], path[2]] };
  if (path[0] === "groups" && path.length === 1) return { view: "groups", args: [] };
  if (path[0] === "groups" && path.length === 2) return { view: "group", args: [path[1]] };
  return { view: "overview", args: [] };
}

const VIEWS = { overview: viewOverview, topics: viewTopics, topic: viewTopic, records: viewRecords, groups: viewGroups, group: viewGroup };
const NAV = { overview: "overview", topics: "topics", topic: "topics", records: "topics", groups: "groups", group: "groups" };

let rendering = 0;
async function render() {
  const ticket = ++rendering;
  current = route();
  delete document.body.dataset.ready;
  document.body.dataset.view = current.view;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.view === NAV[current.view]);
  let content;
  try {
    content = await VIEWS[current.view](...current.args);
  } catch (error) {
    content = [h("p", { class: "error", id: "view-error" }, String(error.message || error))];
  }
  if (ticket !== rendering) return;
  page.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  document.body.dataset.ready = "1";
  document.body.dataset.renderedAt = String(Date.now());
}

function refreshSoon() {
  if (current.view === "records") return; // a snapshot the user reloads
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(render, 250);
}

function follow() {
  const events = new EventSource("/api/v1/events");
  events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  events.addEventListener("metadata", (e) => {
    if (current.view === "overview" && document.body.dataset.ready) {
      page.replaceChildren(...renderOverview(JSON.parse(e.data)));
      document.body.dataset.renderedAt = String(Date.now());
    } else {
      refreshSoon();
    }
  });
  events.addEventListener("sample", () => refreshSoon());
}

window.addEventListener("hashchange", render);
render();
follow();
