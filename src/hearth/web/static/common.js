// Shared by the pages: the message catalogue, and calls to the HTTP API with the key the
// user gave (asked for on the first 401, kept in localStorage).

const M = window.HEARTH_MESSAGES || {};
export const t = (key, vars = {}) =>
  (M[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));

export const $ = (sel) => document.querySelector(sel);
const auth = { key: localStorage.getItem("hearth.key") || "" };

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (auth.key) headers.Authorization = `Bearer ${auth.key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !options.retried) {
    const key = window.prompt(t("key.prompt"));
    if (key) {
      auth.key = key.trim();
      localStorage.setItem("hearth.key", auth.key);
      return api(path, { ...options, retried: true });
    }
  }
  return response;
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
