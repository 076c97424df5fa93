// Shared by the pages: the message catalogue, and calls to the HTTP API with the key the
// user gave (asked for on the first 401, kept in localStorage).

const M = window.HEARTH_MESSAGES || {};
export const t = (key, vars = {}) =>
  (M[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));

export const $ = (sel) => document.querySelector(sel);
const auth = { key: localStorage.getItem("hearth.key") || "" };

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  const sent = auth.key;
  if (sent) headers.Authorization = `Bearer ${sent}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !options.retried) {
    // A request sent before another one's prompt was answered: retry with that key.
    if (auth.key && auth.key !== sent) return api(path, { ...options, retried: true });
    const key = window.prompt(t("key.prompt"));
    if (key?.trim()) {
      setKey(key);
      return api(path, { ...options, retried: true });
    }
  }
  return response;
}

// Use this key from now on in this browser ("" forgets it).
export function setKey(key) {
  auth.key = key.trim();
  if (auth.key) localStorage.setItem("hearth.key", auth.key);
  else localStorage.removeItem("hearth.key");
  showKey();
}

export const hasKey = () => Boolean(auth.key);

// The header's key button: shows which key is in use; a click enters another (empty: none).
const keyButton = document.getElementById("key-button");
function showKey() {
  if (keyButton) keyButton.textContent = auth.key ? `${t("key.label")} …${auth.key.slice(-4)}` : t("key.sign_in");
}
if (keyButton) {
  showKey();
  keyButton.addEventListener("click", () => {
    const key = window.prompt(t("key.enter"), "");
    if (key === null) return;
    setKey(key);
    window.location.reload();
  });
}

export async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body?.error?.message || response.statusText);
  return body;
}

export function money(value) {
  return Number(value || 0).toFixed(value && value < 0.01 ? 6 : 4);
}

export function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
  return td;
}

// Price per 1000 tokens ({input, output}) times a usage's tokens.
export function costOf(price, usage) {
  if (!price || !usage) return 0;
  return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1000;
}

// One labelled field per app variable (its type, default and description kept).
export function variableFields(box, inputs) {
  box.textContent = "";
  for (const [name, spec] of Object.entries(inputs || {})) {
    const label = document.createElement("label");
    label.textContent = `${name}${spec.required ? " *" : ""} `;
    const input = document.createElement("input");
    input.name = name;
    input.dataset.type = spec.type;
    input.value = spec.default ?? "";
    input.title = spec.description || "";
    label.append(input);
    box.append(label);
  }
  return box.childElementCount;
}

// The filled fields as the app's variables, numbers and booleans typed.
export function readVariables(box) {
  const out = {};
  for (const input of box.querySelectorAll("input")) {
    if (input.value === "") continue;
    const type = input.dataset.type;
    out[input.name] =
      type === "integer" || type === "number" ? Number(input.value)
      : type === "boolean" ? input.value === "true"
      : input.value;
  }
  return out;
}
