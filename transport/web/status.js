// The status page: polls data.json and draws the history as inline SVG (no libraries).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 320, H = 100, PAD_L = 34, PAD_B = 14, PAD_T = 6, PAD_R = 4;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(v >= 10 ? 1 : 2);
}

// lines: [{values: [...], cls: "users"}]; t: timestamps (seconds)
function chart(svg, t, lines, span) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const all = lines.flatMap(l => l.values);
  const max = niceMax(Math.max(0, ...all));
  const t1 = t.length ? t[t.length - 1] : 0;
  const t0 = t1 - Math.max(span || 0, 60);
  const x = v => PAD_L + (W - PAD_L - PAD_R) * (t1 > t0 ? (v - t0) / (t1 - t0) : 1);
  const y = v => PAD_T + (H - PAD_T - PAD_B) * (1 - v / max);
  svg.appendChild(el("svg:line", {class: "axis", x1: PAD_L, y1: y(0), x2: W - PAD_R, y2: y(0)}));
  svg.appendChild(el("svg:line", {class: "axis", x1: PAD_L, y1: y(max), x2: W - PAD_R, y2: y(max)}));
  svg.appendChild(el("svg:text", {class: "label", x: PAD_L - 3, y: y(max) + 3, "text-anchor": "end"}, fmt(max)));
  svg.appendChild(el("svg:text", {class: "label", x: PAD_L - 3, y: y(0) + 3, "text-anchor": "end"}, "0"));
  const minutes = Math.round((t1 - t0) / 60);
  const visible = i => t[i] >= t0;
  svg.appendChild(el("svg:text", {class: "label", x: PAD_L, y: H - 2}, `-${minutes} min`));
  svg.appendChild(el("svg:text", {class: "label", x: W - PAD_R, y: H - 2, "text-anchor": "end"}, "now"));
  for (const line of lines) {
    if (!line.values.length) continue;
    const pts = line.values.map((v, i) => visible(i) ? `${x(t[i]).toFixed(1)},${y(v).toFixed(1)}` : "")
      .filter(Boolean).join(" ");
    svg.appendChild(el("svg:polyline", {class: `line ${line.cls}`, points: pts}));
    const last = line.values[line.values.length - 1];
    svg.appendChild(el("svg:title", {}, `${line.cls}: ${fmt(last)}`));
  }
}

function render(data) {
  const inst = data.instance;
  document.getElementById("title").textContent = `${inst.name} — ${inst.jid} (${inst.protocol})`;
  document.title = `Status: ${inst.jid}`;
  const live = data.backends.filter(b => b.state === "ready" || b.state === "spawning").length;
  const up = data.uptime === null ? "?" : `${Math.floor(data.uptime / 3600)} h ${Math.floor(data.uptime % 3600 / 60)} min`;
  document.getElementById("summary").textContent =
    `${data.online_count} users online, ${data.current.sessions} sessions, ${live} backends, ` +
    `${data.waiting} waiting for a backend, up ${up}`;
  const s = data.series, span = data.history;
  chart(document.getElementById("chart-users"), s.t, [{values: s.users_online, cls: "users"}], span);
  chart(document.getElementById("chart-messages"), s.t, [{values: s.in_rate, cls: "in"}, {values: s.out_rate, cls: "out"}], span);
  chart(document.getElementById("chart-backends"), s.t, [{values: s.backends, cls: "backends"}], span);
  chart(document.getElementById("chart-memory"), s.t, [{values: s.memory_kib.map(v => v / 1024), cls: "memory"}], span);

  const body = document.querySelector("#backends tbody");
  body.replaceChildren(...data.backends.map(b => {
    const row = el("tr");
    row.appendChild(el("td", {}, b.name + (b.remote ? " (remote)" : "")));
    row.appendChild(el("td", {class: `state-${b.state}`}, b.state));
    row.appendChild(el("td", {}, b.pid === null ? "—" : b.pid));
    const users = el("td", {}, b.user_count);
    if (b.users.length) users.appendChild(el("div", {class: "users"}, b.users.join(", ")));
    row.appendChild(users);
    row.appendChild(el("td", {}, b.memory_kib === null ? "—" : `${(b.memory_kib / 1024).toFixed(1)} MiB`));
    row.appendChild(el("td", {}, b.ping_ms === null ? "—" : `${b.ping_ms} ms`));
    return row;
  }));
  document.getElementById("online-count").textContent = `(${data.online_count})`;
  document.getElementById("online").replaceChildren(...data.online.map(u => el("li", {}, u)));
  document.getElementById("crash-count").textContent = `(${data.crashes_total} since start)`;
  document.getElementById("crashes").replaceChildren(...data.crashes.slice().reverse().map(c =>
    el("li", {}, `${new Date(c.at * 1000).toISOString()} backend-${c.backend} (pid ${c.pid}): ${c.reason}, ${c.users} users`)));
  document.getElementById("updated").textContent = new Date(data.now * 1000).toLocaleTimeString();
  document.getElementById("interval").textContent = data.interval;
  document.body.dataset.loaded = "1";
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    // location.origin leaves out user:password@ (a URL with credentials cannot be fetched);
    // the browser sends the Basic credentials it used for the page.
    const url = new URL("data.json", location.origin + location.pathname);
    const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    render(await response.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = `Cannot load the status: ${e.message}`;
    error.hidden = false;
  }
}

refresh();
setInterval(refresh, 5000);
