// The keys page (admin keys only): every key with its limits and state, a form that
// creates one and shows its secret once (POST /v1/keys), and revoke (DELETE /v1/keys/ID).

import { $, api, cell, hasKey, json, setKey, t } from "./common.js";

const list = (text) => {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
};
const when = (seconds) => (seconds ? new Date(seconds * 1000).toISOString().slice(0, 10) : "");

async function load() {
  const response = await api("/v1/keys");
  const body = await response.json().catch(() => ({}));
  const error = $("#keys-error");
  if (!response.ok) {
    $("#keys").textContent = "";
    error.hidden = false;
    error.textContent = response.status === 403 || response.status === 401
      ? t("keys.admin_only") : body?.error?.message || response.statusText;
    $("#new-key-section").hidden = true;
    document.body.dataset.ready = "true";
    return;
  }
  error.hidden = true;
  $("#new-key-section").hidden = false;
  const table = $("#keys");
  table.textContent = "";
  const head = table.createTHead().insertRow();
  for (const key of ["keys.name", "keys.hint", "keys.models", "keys.kbs", "keys.rpm", "keys.tpm",
    "keys.budget", "keys.expires", "keys.admin", "keys.state", ""]) {
    const th = document.createElement("th");
    th.textContent = key ? t(key) : "";
    head.append(th);
  }
  const rows = table.createTBody();
  if (!body.data.length) cell(rows.insertRow(), t("keys.none")).colSpan = 11;
  // Once a key exists every request needs one: the first must be an admin key, or nobody
  // could manage keys from here again.
  const first = !body.data.length;
  $("#first-key").hidden = !first;
  $("#new-key").elements.admin.disabled = first;
  if (first) $("#new-key").elements.admin.checked = true;
  for (const k of body.data) {
    const tr = rows.insertRow();
    tr.dataset.id = k.id;
    cell(tr, k.name);
    cell(tr, k.hint);
    cell(tr, k.models ? k.models.join(", ") : t("keys.all"));
    cell(tr, k.knowledge_bases ? k.knowledge_bases.join(", ") : t("keys.all"));
    cell(tr, k.rpm ?? "");
    cell(tr, k.tpm ?? "");
    cell(tr, k.budget ?? "");
    cell(tr, when(k.expires));
    cell(tr, k.admin ? "✓" : "");
    cell(tr, t(`keys.state_${k.state}`));
    const td = cell(tr, "");
    if (k.state === "active") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "revoke";
      button.textContent = t("keys.revoke");
      button.addEventListener("click", () => revoke(k));
      td.append(button);
    }
  }
  document.body.dataset.ready = "true";
}

async function revoke(k) {
  if (!window.confirm(t("keys.confirm_revoke", { name: k.name }))) return;
  try {
    await json(`/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
  } catch (e) {
    $("#keys-error").hidden = false;
    $("#keys-error").textContent = e.message;
  }
  await load();
}

async function create(event) {
  event.preventDefault();
  const form = event.target;
  const f = (name) => form.elements[name].value.trim();
  const request = { name: f("name"), admin: form.elements.admin.checked };
  if (list(f("models"))) request.models = list(f("models"));
  if (list(f("knowledge_bases"))) request.knowledge_bases = list(f("knowledge_bases"));
  for (const name of ["rpm", "tpm", "budget"]) if (f(name) !== "") request[name] = Number(f(name));
  if (f("expires")) request.expires = `${f("expires")}T00:00:00Z`;
  try {
    if (form.elements.admin.disabled) request.admin = true;
    const key = await json("/v1/keys", { method: "POST", body: JSON.stringify(request) });
    if (key.admin && !hasKey()) setKey(key.key); // the first key: this browser uses it
    $("#secret").hidden = false;
    $("#secret-value").textContent = key.key;
    $("#keys-error").hidden = true;
    form.reset();
  } catch (e) {
    $("#keys-error").hidden = false;
    $("#keys-error").textContent = e.message;
  }
  await load();
}

$("#new-key").addEventListener("submit", create);
load();
