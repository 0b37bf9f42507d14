// The status page: fetch status.json every 2 s and render it. Text goes in with textContent only,
// never as HTML, so a user name cannot inject markup; the page's CSP allows no inline script.
"use strict";

const POLL_MS = 2000;

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  return `${Math.floor(value / 3600)} h ${Math.floor((value % 3600) / 60)} min`;
}

function millis(value) {
  return value === null || value === undefined ? "–" : `${(value * 1000).toFixed(1)} ms`;
}

function bytes(value) {
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / 1024 / 1024).toFixed(1)} MiB`;
}

function rate(value) {
  return value === null || value === undefined ? "–" : value.toFixed(1);
}

function setText(id, text) {
  document.getElementById(id).textContent = String(text);
}

function fillTable(id, rows, measure) {
  const body = document.querySelector(`#${id} tbody`);
  const fresh = rows.map((row) => {
    const tr = document.createElement("tr");
    for (const text of [row.user ?? "–", row.address, seconds(row.age_s), row.rooms, measure(row)]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.appendChild(td);
    }
    return tr;
  });
  body.replaceChildren(...fresh);
}

function render(status) {
  const counts = status.counts;
  setText("connections", `${counts.connections} / ${counts.connections_max}`);
  setText("users_online", counts.users_online);
  setText("rooms", counts.rooms);
  setText("store_queue_depth", counts.store_queue_depth);
  setText("messages_per_s", rate(status.rates.messages_per_s));
  setText("deliveries_per_s", rate(status.rates.deliveries_per_s));
  setText(
    "rate-window",
    status.rates.window_s === null ? "rates: collecting samples…" : `rates over the last ${seconds(status.rates.window_s)}`,
  );
  fillTable("table-buffered", status.tables.buffered, (row) => bytes(row.buffered));
  fillTable("table-silence", status.tables.silence, (row) => seconds(row.silent_s));
  fillTable("table-rtt", status.tables.rtt, (row) => millis(row.rtt_s));
  const state = document.getElementById("state");
  state.classList.remove("stale");
  state.textContent = `${status.state}, version ${status.version}, up ${seconds(status.uptime_s)}; ` +
    `updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (error) {
    const state = document.getElementById("state");
    state.classList.add("stale");
    state.textContent = `server unreachable (${error.message}); retrying`;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
