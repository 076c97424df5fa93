// The usage page: calls, tokens and cost by day (a chart and a table), by model, by app and
// by key, moderation hits and recent calls, all from /v1/usage.

import { $, cell, json, money, t } from "./common.js";

const TOTALS = [
  ["usage.calls", (r) => r.calls],
  ["usage.errors", (r) => r.errors],
  ["usage.prompt", (r) => r.prompt_tokens],
  ["usage.completion", (r) => r.completion_tokens],
  ["usage.tokens", (r) => r.total_tokens],
  ["usage.cost", (r) => money(r.cost)],
];

function table(id, columns, rows) {
  const el = $(id);
  el.textContent = "";
  const head = el.createTHead().insertRow();
  for (const [label] of columns) {
    const th = document.createElement("th");
    th.textContent = t(label);
    head.append(th);
  }
  const body = el.createTBody();
  if (!rows.length) {
    const td = cell(body.insertRow(), t("usage.none"));
    td.colSpan = columns.length;
    td.className = "muted";
  }
  for (const r of rows) {
    const tr = body.insertRow();
    for (const [, value] of columns) cell(tr, value(r));
  }
}

function query(by) {
  const q = new URLSearchParams({ by });
  if ($("#since").value) q.set("since", $("#since").value);
  if ($("#until").value) q.set("until", $("#until").value);
  return `/v1/usage?${q}`;
}

let chart = null;
function draw(rows) {
  const el = $("#chart");
  if (chart) chart.destroy();
  el.textContent = "";
  if (!rows.length) return;
  const days = rows.map((r) => Date.parse(`${r.day}T00:00:00Z`) / 1000);
  chart = new uPlot(
    {
      width: Math.min(el.clientWidth || 800, 900),
      height: 240,
      scales: {
        x: { time: true, range: (u, min, max) => [min - 86400, max + 86400] },
        tokens: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] },
        cost: { range: (u, min, max) => [0, Math.max(max * 1.1, 1e-6)] },
      },
      series: [
        {},
        { label: t("usage.tokens"), stroke: "#1f6feb", scale: "tokens", points: { size: 7 } },
        {
          label: t("usage.cost"),
          stroke: "#d1242f",
          scale: "cost",
          points: { size: 7 },
          value: (u, v) => (v == null ? "--" : money(v)),
        },
      ],
      axes: [
        {},
        { scale: "tokens" },
        { scale: "cost", side: 1, size: 70, values: (u, ticks) => ticks.map((v) => money(v)) },
      ],
    },
    [days, rows.map((r) => r.total_tokens), rows.map((r) => r.cost)],
    el,
  );
}

async function load() {
  const since = $("#since").value ? `?since=${$("#since").value}` : "";
  // Every request at once: the page is ready after the slowest, not after their sum.
  const [byDay, byModel, byApp, byKey, hits, recent] = await Promise.all([
    ...["day", "model", "app", "key"].map((by) => json(query(by)).then((b) => b.data)),
    json(`/v1/usage/moderation${since}`).then((b) => b.data).catch(() => []),
    json("/v1/usage/calls?limit=50").then((b) => b.data),
  ]);
  draw(byDay);
  table("#by-day", [["usage.day", (r) => r.day], ...TOTALS], byDay);
  table("#by-model", [["usage.model", (r) => r.model], ...TOTALS], byModel);
  table(
    "#by-app",
    [["usage.app", (r) => r.app || t("usage.no_app")], ["usage.model", (r) => r.model], ...TOTALS],
    byApp,
  );
  const keyed = byKey.filter((r) => r.key);
  $("#keys-section").hidden = !keyed.length;
  table("#by-key", [["usage.key", (r) => r.key_name || r.key], ...TOTALS], keyed);
  table(
    "#moderation",
    [
      ["usage.app", (r) => r.app],
      ["usage.list", (r) => r.list],
      ["usage.category", (r) => r.category],
      ["usage.action", (r) => r.action],
      ["usage.direction", (r) => r.direction],
      ["usage.hits", (r) => r.hits],
    ],
    hits,
  );
  table(
    "#recent",
    [
      ["usage.time", (r) => new Date(r.created * 1000).toLocaleString()],
      ["usage.model", (r) => r.model],
      ["usage.app", (r) => r.app || ""],
      ["usage.tokens", (r) => r.prompt_tokens + r.completion_tokens],
      ["usage.ttft", (r) => (r.ttft_ms == null ? "" : Math.round(r.ttft_ms))],
      ["usage.latency", (r) => Math.round(r.latency_ms)],
      ["usage.status", (r) => r.status],
      ["usage.cost", (r) => money(r.cost)],
    ],
    recent,
  );
  document.body.dataset.ready = "true";
}

// A failed request (no key, a bad range) is said on the page, which is then ready.
async function show() {
  const error = $("#usage-error");
  try {
    await load();
    error.hidden = true;
  } catch (e) {
    error.hidden = false;
    error.textContent = e.message;
    document.body.dataset.ready = "true";
  }
}

$("#range").addEventListener("submit", (e) => {
  e.preventDefault();
  document.body.dataset.ready = "false";
  show();
});
show();
