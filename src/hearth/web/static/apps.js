// The apps page: the installed apps, and an editor for an app file that shows the
// server's validation problems at their line (POST /v1/apps/validate, PUT /v1/apps/NAME).

import { $, api, cell, json, t } from "./common.js";

const NEW = `app: my-app
description: What it does
variants:
  default:
    model: qwen2.5-0.5b-instruct
    system: You are a helpful assistant.
    user: "{{ input }}"
`;
let editing = null;

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
  const text = name ? (await json(`/v1/apps/${encodeURIComponent(name)}`)).text : NEW;
  $("#editor").value = text;
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
  await list();
}

$("#new-app").addEventListener("click", () => edit(null));
$("#check").addEventListener("click", check);
$("#save").addEventListener("click", save);
list();
