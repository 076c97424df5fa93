// The chat page: talks to the HTTP API only (models, conversations, chat completions).
// Answers stream through fetch + ReadableStream, render as markdown that DOMPurify
// sanitises after rendering, at most once per animation frame; Stop aborts the request
// (the server stops generating and logs the partial call).

import {
  $, api, costOf as priceCost, json, money, readVariables, t, variableFields,
} from "./common.js";

const state = {
  models: new Map(), // id -> model entry (price, owned_by)
  conversation: null, // {id, metadata}
  controller: null,
  loaded: null, // resolves once models, conversations and the addressed conversation are in
  waiting: false, // a message typed during loading waits for that
};

// -- rendering ----------------------------------------------------------------------------
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

export function renderMarkdown(element, text) {
  // Sanitised after rendering: whatever the markdown produced, no script survives.
  element.innerHTML = DOMPurify.sanitize(marked.parse(text, { async: false }), {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "iframe"],
  });
}

// Counters a test or benchmark reads: markdown renders of streamed answers, deltas received.
window.hearthStats = { paints: 0, deltas: 0 };

function bubble(role, text = "", scroll = true) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const body = document.createElement("div");
  body.className = "body";
  div.append(body);
  if (role === "user") body.textContent = text;
  else renderMarkdown(body, text);
  $("#messages").append(div);
  if (scroll) div.scrollIntoView({ block: "end" });
  return div;
}

function costOf(model, usage) {
  return priceCost(state.models.get(model)?.price, usage);
}

function showMeta(div, usage, cost, stopped) {
  const meta = document.createElement("div");
  meta.className = "meta muted";
  const parts = [];
  if (usage) {
    parts.push(t("chat.tokens", { prompt: usage.prompt_tokens, completion: usage.completion_tokens }));
    parts.push(t("chat.cost", { cost: money(cost) }));
  }
  if (stopped) parts.push(t("chat.stopped"));
  meta.textContent = parts.join(" · ");
  div.append(meta);
}

function showSources(div, sources) {
  if (!sources?.length) return;
  const head = document.createElement("div");
  head.className = "muted";
  head.textContent = t("chat.sources");
  const list = document.createElement("ol");
  list.className = "sources";
  for (const s of sources) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    const section = Array.isArray(s.section) ? s.section.join(" › ") : s.section || "";
    const where = [s.document, s.page ? `p. ${s.page}` : "", section].filter(Boolean);
    link.textContent = where.join(" · ");
    link.addEventListener("click", () => {
      $("#chunk-text").textContent = s.text || "";
      $("#chunk-dialog").showModal();
    });
    item.append(link);
    list.append(item);
  }
  div.append(head, list);
}

function showTotal() {
  const m = state.conversation?.metadata || {};
  $("#conversation-total").textContent = m.tokens
    ? t("chat.total", { tokens: m.tokens, cost: money(Number(m.cost || 0)) })
    : "";
}

// -- models and conversations ----------------------------------------------------------------
async function loadModels() {
  const { data } = await json("/v1/models");
  const select = $("#model");
  select.textContent = "";
  for (const m of data) {
    if (m.embedding) continue;
    state.models.set(m.id, m);
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.owned_by === "app" ? `${m.id} (app)` : m.id;
    select.append(option);
  }
}

async function showVariables() {
  const box = $("#variables");
  box.textContent = "";
  const entry = state.models.get($("#model").value);
  box.hidden = entry?.owned_by !== "app";
  if (box.hidden) return;
  const app = await json(`/v1/apps/${encodeURIComponent(entry.id)}`);
  box.hidden = !variableFields(box, app.inputs);
}

function variables() {
  return readVariables($("#variables"));
}

async function loadConversations() {
  const { data } = await json("/v1/conversations?limit=100");
  const list = $("#conversations");
  list.textContent = "";
  $("#no-conversations").hidden = data.length > 0;
  for (const c of data) {
    const item = document.createElement("li");
    item.dataset.id = c.id;
    item.classList.toggle("current", c.id === state.conversation?.id);
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = c.metadata?.title || t("chat.untitled");
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename";
    rename.textContent = t("chat.rename");
    rename.addEventListener("click", async (e) => {
      e.stopPropagation();
      const name = window.prompt(t("chat.rename_prompt"), title.textContent);
      if (!name) return;
      await saveMetadata(c, { title: name.slice(0, 200) });
      await loadConversations();
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = t("chat.delete");
    remove.addEventListener("click", async (e) => {
      e.stopPropagation();
      if (!window.confirm(t("chat.delete_confirm"))) return;
      await json(`/v1/conversations/${c.id}`, { method: "DELETE" });
      if (state.conversation?.id === c.id) newChat();
      await loadConversations();
    });
    item.append(title, rename, remove);
    item.addEventListener("click", () => openConversation(c));
    list.append(item);
  }
}

async function saveMetadata(conversation, changes) {
  const metadata = { ...(conversation.metadata || {}), ...changes };
  const saved = await json(`/v1/conversations/${conversation.id}`, {
    method: "POST",
    body: JSON.stringify({ metadata }),
  });
  conversation.metadata = saved.metadata;
  return saved;
}

async function openConversation(c) {
  state.conversation = c;
  history.replaceState(null, "", `/chat?c=${encodeURIComponent(c.id)}`);
  $("#messages").textContent = "";
  if (c.metadata?.model && state.models.has(c.metadata.model)) {
    $("#model").value = c.metadata.model;
    await showVariables();
  }
  // Every item, a page at a time; one scroll at the end, not one layout per message.
  let after = "";
  let last = null;
  for (;;) {
    const page = await json(
      `/v1/conversations/${c.id}/items?limit=100&order=asc${after ? `&after=${encodeURIComponent(after)}` : ""}`,
    );
    if (state.conversation !== c) return; // another conversation was opened meanwhile
    for (const item of page.data) {
      const text = (item.content || []).map((p) => p.text || "").join("");
      last = bubble(item.role === "user" ? "user" : "assistant", text, false);
    }
    if (!page.has_more || !page.data.length) break;
    after = page.last_id || page.data[page.data.length - 1].id;
  }
  last?.scrollIntoView({ block: "end" });
  showTotal();
  for (const li of document.querySelectorAll("#conversations li")) {
    li.classList.toggle("current", li.dataset.id === c.id);
  }
}

function newChat() {
  state.conversation = null;
  history.replaceState(null, "", "/chat");
  $("#messages").textContent = "";
  showTotal();
  $("#input").focus();
}

// -- sending and streaming ---------------------------------------------------------------------
async function send() {
  const input = $("#input");
  const text = input.value.trim();
  if (!text || state.controller || state.waiting) return;
  input.value = "";
  // A message sent while the page loads waits for the model list (and the conversation
  // in the address) instead of going out with no model.
  state.waiting = true;
  try {
    await state.loaded;
  } finally {
    state.waiting = false;
  }
  const model = $("#model").value;
  if (!state.conversation) {
    state.conversation = await json("/v1/conversations", {
      method: "POST",
      body: JSON.stringify({ metadata: { title: text.slice(0, 60), model } }),
    });
    history.replaceState(null, "", `/chat?c=${encodeURIComponent(state.conversation.id)}`);
    loadConversations();
  }
  bubble("user", text);
  const div = bubble("assistant");
  const body = div.querySelector(".body");
  const controller = new AbortController();
  state.controller = controller;
  $("#stop").hidden = false;
  $("#send").disabled = true;
  let answer = "";
  let usage = null;
  let sources = null;
  let stopped = false;
  let scheduled = false;
  const paint = () => {
    scheduled = false;
    window.hearthStats.paints += 1;
    renderMarkdown(body, answer);
    div.scrollIntoView({ block: "end" });
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      signal: controller.signal,
      body: JSON.stringify({
        model,
        messages: [{ role: "user", content: text }],
        conversation: state.conversation.id,
        ...(state.models.get(model)?.owned_by === "app" ? { variables: variables() } : {}),
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error(err?.error?.message || response.statusText);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const raw = line.slice(5).trim();
          if (raw === "[DONE]") continue;
          const chunk = JSON.parse(raw);
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) {
            answer += delta;
            window.hearthStats.deltas += 1;
            if (!scheduled) {
              scheduled = true;
              requestAnimationFrame(paint);
            }
          }
          if (chunk.usage) usage = chunk.usage;
          if (chunk.sources) sources = chunk.sources;
        }
      }
    }
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else {
      const note = document.createElement("p");
      note.className = "error";
      note.textContent = t("chat.error", { message: error.message });
      div.append(note);
    }
  } finally {
    state.controller = null;
    $("#stop").hidden = true;
    $("#send").disabled = false;
  }
  paint();
  const cost = costOf(model, usage);
  showMeta(div, usage, cost, stopped);
  showSources(div, sources);
  if (usage) {
    const m = state.conversation.metadata || {};
    await saveMetadata(state.conversation, {
      tokens: String(Number(m.tokens || 0) + usage.total_tokens),
      cost: String(Number(m.cost || 0) + cost),
      model,
    });
    showTotal();
  }
}

// -- wiring ----------------------------------------------------------------------------------
function wire() {
  const input = $("#input");
  input.addEventListener("keydown", (e) => {
    // Enter sends; Shift+Enter breaks the line; Enter while an IME composes picks a candidate.
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    send();
  });
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("#stop").addEventListener("click", () => state.controller?.abort());
  $("#new-chat").addEventListener("click", newChat);
  $("#model").addEventListener("change", showVariables);
}

async function start() {
  // Read before anything awaits: a message sent while the page loads puts its new
  // conversation in the address, and must not be replaced by a reload of it.
  const wanted = new URLSearchParams(location.search).get("c");
  state.loaded = (async () => {
    await Promise.all([loadModels().then(showVariables), loadConversations()]);
    if (wanted && !state.conversation) {
      const found = await json(`/v1/conversations/${wanted}`).catch(() => null);
      if (found) await openConversation(found);
    }
  })().catch((error) => {
    // The page stays usable; a send then reports what is wrong (no model, no key ...).
    const note = document.createElement("p");
    note.className = "error";
    note.textContent = t("chat.error", { message: error.message });
    $("#messages").append(note);
  });
  wire();
  await state.loaded;
  document.body.dataset.ready = "true";
}

start();
