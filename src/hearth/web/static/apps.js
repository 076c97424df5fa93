// The apps page: the installed apps, an editor for an app file that shows the server's
// validation problems at their line (POST /v1/apps/validate, PUT /v1/apps/NAME), the app
// tried on each of its variants side by side (POST /v1/apps/NAME/run per model), and its
// tests as a table (POST /v1/apps/NAME/test).

import {
  $, api, cell, costOf, json, money, readVariables, t, variableFields,
} from "./common.js";

const NEW = `app: my-app
description: What it does
variants:
  default:
    model: qwen2.5-0.5b-instruct
    system: You are a helpful assistant.
    user: "{{ input }}"
`;
let editing = null;
let prices = new Map(); // model id -> price per 1000 tokens

async function list() {
  const body = await json("/v1/apps");
  const el = $("#apps");
  el.textContent = "";
  const head = el.createTHead().insertRow();
  for (const key of ["apps.name", "apps.description", "apps.models", ""]) {
    const th = document.createElement("th");
    th.textContent = key ? t(key) : "";
    head.append(th);
  }
  const rows = el.createTBody();
  if (!body.data.length) cell(rows.insertRow(), t("apps.none")).colSpan = 4;
  for (const a of body.data) {
    const tr = rows.insertRow();
    cell(tr, a.id);
    cell(tr, a.description);
    cell(tr, (a.models || []).filter(Boolean).join(", "));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "edit";
    button.textContent = t("apps.edit");
    button.addEventListener("click", () => edit(a.id));
    cell(tr, "").append(button);
  }
  const broken = Object.entries(body.invalid_files || {});
  $("#invalid").hidden = !broken.length;
  $("#invalid-list").textContent = "";
  for (const [file, problems] of broken) {
    for (const p of problems) {
      const li = document.createElement("li");
      li.textContent = `${file}: ${p.line ? t("apps.line", { line: p.line }) + ": " : ""}${p.message}`;
      $("#invalid-list").append(li);
    }
  }
  document.body.dataset.ready = "true";
}

async function edit(name) {
  editing = name;
  const app = name ? await json(`/v1/apps/${encodeURIComponent(name)}`) : null;
  $("#editor").value = app ? app.text : NEW;
  showTry(app);
  $("#editing").textContent = name || t("apps.new");
  $("#editor-section").hidden = false;
  $("#problems").textContent = "";
  $("#status").textContent = "";
}

function goToLine(line) {
  const area = $("#editor");
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function showProblems(problems) {
  const ul = $("#problems");
  ul.textContent = "";
  for (const p of problems) {
    const li = document.createElement("li");
    li.dataset.line = p.line ?? "";
    const where = p.line ? `${t("apps.line", { line: p.line })} · ` : "";
    li.textContent = `${where}${p.path ? p.path + ": " : ""}${p.message}`;
    if (p.line) li.addEventListener("click", () => goToLine(p.line));
    ul.append(li);
  }
}

async function check() {
  const result = await json("/v1/apps/validate", {
    method: "POST",
    headers: { "Content-Type": "application/yaml" },
    body: $("#editor").value,
  });
  showProblems(result.problems);
  $("#status").textContent = result.valid ? t("apps.valid") : "";
  return result;
}

async function save() {
  const result = await check();
  if (!result.valid) return;
  const name = editing || result.app.id;
  const response = await api(`/v1/apps/${encodeURIComponent(name)}`, {
    method: "PUT",
    headers: { "Content-Type": "application/yaml" },
    body: $("#editor").value,
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    showProblems([{ message: body?.error?.message || response.statusText }]);
    return;
  }
  editing = body.id;
  $("#status").textContent = t("apps.saved");
  showTry(await json(`/v1/apps/${encodeURIComponent(editing)}`));
  await loadPrices();
list();
}

function showTry(app) {
  $("#try-section").hidden = !app;
  $("#tests-section").hidden = !app || !app.tests;
  $("#matrix").textContent = "";
  $("#tests").textContent = "";
  $("#tests-status").textContent = app?.tests ? t("apps.tests_count", { n: app.tests }) : "";
  if (!app) return;
  variableFields($("#try-vars"), app.inputs);
  $("#try-section").dataset.models = JSON.stringify(app.models.length ? app.models : [null]);
}

// One card per variant's model, filled as each answer arrives.
async function tryApp() {
  const name = editing;
  const models = JSON.parse($("#try-section").dataset.models || "[null]");
  const request = { input: $("#try-input").value, inputs: readVariables($("#try-vars")) };
  const grid = $("#matrix");
  grid.textContent = "";
  $("#try").disabled = true;
  const cards = models.map((model) => {
    const card = document.createElement("div");
    card.className = "card pending";
    card.dataset.model = model || "";
    const title = document.createElement("h3");
    title.textContent = model || t("apps.default_model");
    const body = document.createElement("pre");
    body.className = "output";
    body.textContent = t("apps.running");
    const meta = document.createElement("div");
    meta.className = "meta muted";
    card.append(title, body, meta);
    grid.append(card);
    return { model, card, body, meta };
  });
  await Promise.all(cards.map(async ({ model, card, body, meta }) => {
    const response = await api(`/v1/apps/${encodeURIComponent(name)}/run`, {
      method: "POST",
      body: JSON.stringify(model ? { ...request, model } : request),
    });
    const result = await response.json().catch(() => ({}));
    card.classList.remove("pending");
    if (!response.ok) {
      card.classList.add("failed");
      body.textContent = result?.error?.message || response.statusText;
      return;
    }
    const output = result.output;
    body.textContent = typeof output === "string" ? output : JSON.stringify(output, null, 2);
    const usage = result.usage || {};
    const cost = costOf(prices.get(result.model), usage);
    meta.textContent = [
      `${t("apps.variant")}: ${result.variant}`,
      t("chat.tokens", { prompt: usage.prompt_tokens ?? 0, completion: usage.completion_tokens ?? 0 }),
      ...(cost ? [t("chat.cost", { cost: money(cost) })] : []),
      result.seconds != null ? `${result.seconds.toFixed(2)} s` : "",
    ].filter(Boolean).join(" · ");
  }));
  $("#try").disabled = false;
}

// The test table: one row per case, model and assertion.
async function runTests() {
  const table = $("#tests");
  table.textContent = "";
  $("#run-tests").disabled = true;
  $("#tests-status").textContent = t("apps.running");
  try {
    const report = await json(`/v1/apps/${encodeURIComponent(editing)}/test`, { method: "POST", body: "{}" });
    const head = table.createTHead().insertRow();
    for (const key of ["apps.case", "apps.models", "apps.variant", "apps.assertion", "apps.result", "apps.detail"]) {
      const th = document.createElement("th");
      th.textContent = t(key);
      head.append(th);
    }
    const rows = table.createTBody();
    for (const r of report.results) {
      const checks = r.error != null
        ? [{ assertion: t("apps.runs"), passed: false, detail: r.error }]
        : r.assertions.length ? r.assertions : [{ assertion: t("apps.no_assertions"), passed: true, detail: "" }];
      for (const a of checks) {
        const tr = rows.insertRow();
        tr.className = a.passed ? "pass" : "fail";
        cell(tr, r.case);
        cell(tr, r.model);
        cell(tr, r.variant);
        cell(tr, a.assertion);
        cell(tr, a.passed ? t("apps.pass") : t("apps.fail"));
        cell(tr, a.detail).title = r.output || "";
      }
    }
    $("#tests-status").textContent = t("apps.tests_passed", { passed: report.passed, total: report.total });
  } catch (e) {
    $("#tests-status").textContent = e.message;
  } finally {
    $("#run-tests").disabled = false;
  }
}

async function loadPrices() {
  const body = await json("/v1/models").catch(() => ({ data: [] }));
  prices = new Map(body.data.map((m) => [m.id, m.price]));
}

$("#try").addEventListener("click", tryApp);
$("#run-tests").addEventListener("click", runTests);
$("#new-app").addEventListener("click", () => edit(null));
$("#check").addEventListener("click", check);
$("#save").addEventListener("click", save);
loadPrices();
list();
