// The knowledge-base page: create and delete bases; upload several files, each with its
// own progress bar and then its ingestion state from the server (which goes on if this
// page closes, and is shown again after a reload); documents; a search with scores.

import { $, cell, json, t } from "./common.js";

let current = null;
const sending = new Map(); // file name -> {progress, state, error} while it uploads
let polling = null;

async function listKbs() {
  const { data } = await json("/v1/knowledge_bases");
  const ul = $("#kbs");
  ul.textContent = "";
  $("#no-kbs").hidden = data.length > 0;
  for (const kb of data) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.textContent = kb.name;
    a.href = `/kb?name=${encodeURIComponent(kb.name)}`;
    a.addEventListener("click", (e) => {
      e.preventDefault();
      open(kb.name);
    });
    li.classList.toggle("current", kb.name === current);
    li.append(a);
    ul.append(li);
  }
}

async function open(name) {
  current = name;
  history.replaceState(null, "", `/kb?name=${encodeURIComponent(name)}`);
  $("#kb-section").hidden = false;
  $("#kb-title").textContent = name;
  $("#results").textContent = "";
  for (const li of document.querySelectorAll("#kbs li")) {
    li.classList.toggle("current", li.textContent === name);
  }
  await Promise.all([showUploads(), showDocuments()]);
}

function stateText(state, error) {
  return t(`kb.state.${state}`) + (error ? `: ${error}` : "");
}

async function showUploads() {
  const { data } = await json(`/v1/knowledge_bases/${encodeURIComponent(current)}/uploads`);
  const el = $("#uploads");
  el.textContent = "";
  const body = el.createTBody();
  const rows = [
    ...[...sending.entries()].map(([name, s]) => ({ document: name, ...s, local: true })),
    ...data,
  ];
  for (const up of rows) {
    const tr = body.insertRow();
    tr.dataset.document = up.document;
    tr.dataset.state = up.state;
    cell(tr, up.document);
    const bar = document.createElement("progress");
    bar.max = 100;
    const finished = ["done", "unchanged", "failed"].includes(up.state);
    if (up.local) bar.value = up.progress;
    else if (finished) bar.value = 100;
    else bar.removeAttribute("value"); // indeterminate while the server works on it
    cell(tr, "").append(bar);
    const state = cell(tr, stateText(up.state, up.error));
    state.className = `state ${up.state}`;
  }
  const busy = rows.some((u) => !["done", "unchanged", "failed"].includes(u.state));
  if (busy && !polling) polling = setInterval(refresh, 700);
  if (!busy && polling) {
    clearInterval(polling);
    polling = null;
  }
  document.body.dataset.ready = "true";
}

async function refresh() {
  if (!current) return;
  await showUploads();
  await showDocuments();
}

async function showDocuments() {
  const { data } = await json(`/v1/knowledge_bases/${encodeURIComponent(current)}/documents`);
  const el = $("#documents");
  el.textContent = "";
  const head = el.createTHead().insertRow();
  for (const key of ["kb.document", "kb.chunks", "kb.added", ""]) {
    const th = document.createElement("th");
    th.textContent = key ? t(key) : "";
    head.append(th);
  }
  const body = el.createTBody();
  if (!data.length) cell(body.insertRow(), t("kb.no_documents")).colSpan = 4;
  for (const doc of data) {
    const tr = body.insertRow();
    cell(tr, doc.name);
    cell(tr, doc.chunks);
    cell(tr, new Date(doc.added * 1000).toLocaleString());
    const button = document.createElement("button");
    button.type = "button";
    button.className = "delete";
    button.textContent = t("kb.delete");
    button.addEventListener("click", async () => {
      const path = `/v1/knowledge_bases/${encodeURIComponent(current)}/documents/`;
      await json(path + encodeURIComponent(doc.name), { method: "DELETE" });
      await showDocuments();
    });
    cell(tr, "").append(button);
  }
}

function send(file) {
  // XMLHttpRequest: fetch cannot report upload progress.
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("files", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/knowledge_bases/${encodeURIComponent(current)}/uploads`);
    const key = localStorage.getItem("hearth.key");
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    const entry = { progress: 0, state: "uploading", error: null };
    sending.set(file.name, entry);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) entry.progress = Math.round((100 * e.loaded) / e.total);
      const bar = document.querySelector(`#uploads tr[data-document="${CSS.escape(file.name)}"] progress`);
      if (bar) bar.value = entry.progress;
    };
    xhr.onloadend = () => {
      sending.delete(file.name);
      if (xhr.status !== 202) {
        let message = xhr.statusText || "network error";
        try {
          message = JSON.parse(xhr.responseText).error.message;
        } catch {}
        sending.set(file.name, { progress: 100, state: "failed", error: message });
      }
      resolve();
    };
    xhr.send(form);
  });
}

$("#files").addEventListener("change", async (e) => {
  const files = [...e.target.files];
  for (const f of files) sending.set(f.name, { progress: 0, state: "uploading", error: null });
  await showUploads();
  await Promise.all(files.map(send));
  e.target.value = "";
  await refresh();
});

$("#create-kb").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#create-error").textContent = "";
  const name = $("#kb-name").value.trim();
  try {
    await json("/v1/knowledge_bases", { method: "POST", body: JSON.stringify({ name }) });
  } catch (error) {
    $("#create-error").textContent = error.message;
    return;
  }
  $("#kb-name").value = "";
  await listKbs();
  await open(name);
});

$("#drop-kb").addEventListener("click", async () => {
  if (!window.confirm(t("kb.delete_confirm", { name: current }))) return;
  await json(`/v1/knowledge_bases/${encodeURIComponent(current)}`, { method: "DELETE" });
  current = null;
  $("#kb-section").hidden = true;
  history.replaceState(null, "", "/kb");
  await listKbs();
});

$("#search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const query = $("#query").value.trim();
  if (!query) return;
  const { data } = await json(`/v1/knowledge_bases/${encodeURIComponent(current)}/search`, {
    method: "POST",
    body: JSON.stringify({ query, k: 5 }),
  });
  const ol = $("#results");
  ol.textContent = "";
  for (const r of data) {
    const li = document.createElement("li");
    const head = document.createElement("div");
    head.className = "muted";
    head.textContent = `${r.citation} · ${t("kb.score")} ${Number(r.score).toFixed(3)}`;
    const text = document.createElement("div");
    text.className = "chunk";
    text.textContent = r.text;
    li.append(head, text);
    ol.append(li);
  }
});

async function start() {
  await listKbs();
  const wanted = new URLSearchParams(location.search).get("name");
  if (wanted) await open(wanted);
  else document.body.dataset.ready = "true";
}
start();
