// Sanctum's one script (no inline script anywhere: the pages run under a strict CSP).
// The Ask page streams its answer from POST /v1/ask as server-sent events; the Chat page
// streams each turn from POST /v1/conversations/{id}/turns.
"use strict";

function csrfToken() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.getAttribute("content") : "";
}

function show(el, on) { if (el) { el.hidden = !on; } }

// The answer's sentences that cite source n: the support to highlight in the passage.
function citing(text, n) {
  const marker = "[" + n + "]";
  return (text.match(/[^.!?]+[.!?]*/g) || []).filter((s) => s.includes(marker)).join(" ").replace(/\[\d+\]/g, "").trim().slice(0, 600);
}

function passageLink(chunk, question, support, purpose) {
  const q = new URLSearchParams({ q: question, purpose: purpose });
  if (support) { q.set("support", support); }
  return "/ui/passages/" + encodeURIComponent(chunk) + "?" + q.toString();
}

async function ask(event) {
  event.preventDefault();
  const form = event.target;
  const text = document.getElementById("answer-text");
  const sources = document.getElementById("sources");
  const error = document.getElementById("ask-error");
  text.textContent = "";
  sources.replaceChildren();
  show(error, false);
  show(document.getElementById("ask-empty"), false);
  show(document.getElementById("answer"), true);
  const body = { question: form.question.value, purpose: form.purpose.value };
  let response;
  try {
    response = await fetch("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    error.textContent = "The appliance could not be reached: " + e.message;
    show(error, true);
    return;
  }
  if (!response.ok) {
    error.textContent = await problemOf(response, "The question was refused");
    show(error, true);
    return;
  }
  await events(response, (name, payload) => {
    if (name === "token") {
      text.textContent += payload.text;
    } else if (name === "answer") {
      text.textContent = payload.text;
      (payload.sources || []).forEach((s, i) => {
        const n = s.number || i + 1;
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = passageLink(s.chunk_id, body.question, citing(payload.text, n), body.purpose);
        a.textContent = "[" + n + "] " + (s.title || s.document_name);
        li.appendChild(a);
        li.appendChild(document.createTextNode(" — " + s.text.slice(0, 240) + (s.text.length > 240 ? "…" : "")));
        sources.appendChild(li);
      });
    } else if (name === "error") {
      error.textContent = payload.error ? payload.error.message : "The answer failed.";
      show(error, true);
    }
  });
}

// Reads a server-sent event stream, calling on(name, payload) for each event.
async function events(response, on) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { return; }
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const name = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (data) { on(name, JSON.parse(data)); }
    }
  }
}

async function problemOf(response, fallback) {
  const problem = await response.json().catch(() => null);
  return problem && problem.error ? problem.error.message : fallback + " (" + response.status + ").";
}

// Chat: a question or follow-up streams into the thread (the standalone question it was
// rewritten into first), then the page shows the stored turn; Enter sends, Shift+Enter
// starts a new line; feedback buttons on each answer.
function chat() {
  const form = document.getElementById("chat-form");
  const id = form.getAttribute("data-conversation");
  const message = document.getElementById("message");
  const error = document.getElementById("chat-error");
  const turns = document.getElementById("turns");
  message.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = message.value.trim();
    if (!question) { return; }
    const purpose = form.purpose.value;
    show(error, false);
    show(document.getElementById("chat-empty"), false);
    const send = document.getElementById("send");
    send.disabled = true;
    message.readOnly = true;
    const li = document.createElement("li");
    li.className = "turn pending";
    const asked = document.createElement("p");
    asked.className = "asked";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = "You";
    asked.append(who, " " + question);
    const rewritten = document.createElement("p");
    rewritten.className = "rewritten meta";
    rewritten.textContent = "Understanding the follow-up…";
    const reply = document.createElement("p");
    reply.className = "reply";
    li.append(asked, rewritten, reply);
    turns.appendChild(li);
    const fail = (text) => { error.textContent = text; show(error, true); li.remove(); send.disabled = false; message.readOnly = false; message.focus(); };
    let response;
    try {
      response = await fetch("/v1/conversations/" + encodeURIComponent(id) + "/turns", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ question: question, purpose: purpose }),
        credentials: "same-origin",
      });
    } catch (e) { fail("The appliance could not be reached: " + e.message); return; }
    if (!response.ok) { fail(await problemOf(response, "The question was refused")); return; }
    let stored = null;
    let failed = null;
    await events(response, (name, payload) => {
      if (name === "rewrite") {
        if (payload.question !== question) {
          rewritten.textContent = "Asked as: ";
          const q = document.createElement("q");
          q.textContent = payload.question;
          rewritten.appendChild(q);
        } else { rewritten.textContent = ""; }
      } else if (name === "token") {
        reply.textContent += payload.text;
      } else if (name === "turn") {
        stored = payload;
      } else if (name === "error") {
        failed = payload.error ? payload.error.message : "The answer failed.";
      }
    });
    if (failed || !stored) { fail(failed || "The answer was cut off."); return; }
    // the stored turn, as the thread shows it (sources linked, feedback offered); a URL
    // that differs only in its fragment would not load the page again
    const url = "/ui/chat/" + encodeURIComponent(id) + "?purpose=" + encodeURIComponent(purpose);
    if (location.pathname + location.search === url) {
      location.hash = "turn-" + stored.seq;
      location.reload();
    } else { location.assign(url + "#turn-" + stored.seq); }
  });
  turns.addEventListener("click", async (e) => {
    const button = e.target.closest("button");
    const box = button && button.closest(".feedback");
    if (!box) { return; }
    const seq = box.getAttribute("data-seq");
    let body;
    if (button.classList.contains("helpful")) { body = { helpful: true }; }
    else if (button.classList.contains("unhelpful")) { body = { helpful: false }; }
    else if (button.classList.contains("send-correction")) {
      body = { helpful: false, correction: box.querySelector(".correction").value || null, note: box.querySelector(".note").value || null };
    } else { return; }
    const state = box.querySelector(".feedback-state");
    const r = await fetch("/v1/conversations/" + encodeURIComponent(id) + "/turns/" + encodeURIComponent(seq) + "/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    state.textContent = r.ok ? "You said: " + (body.helpful ? "helpful" : "not helpful") + (body.correction ? " (correction sent)" : "") : await problemOf(r, "The feedback was not stored");
  });
}

// Library: files dropped on the drop zone go into the file field; rows still being indexed
// follow their document until it is indexed or fails.
function library() {
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file");
  const chosen = document.getElementById("chosen");
  const list = () => {
    chosen.replaceChildren();
    Array.from(input.files).forEach((f) => { const li = document.createElement("li"); li.textContent = f.name + " (" + f.size + " bytes)"; chosen.appendChild(li); });
  };
  input.addEventListener("change", list);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; list(); }
  });
  document.querySelectorAll("[data-follow]").forEach(follow);
}

async function follow(cell) {
  const id = cell.getAttribute("data-follow");
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    let d;
    try {
      const r = await fetch("/v1/documents/" + encodeURIComponent(id), { credentials: "same-origin" });
      if (!r.ok) { return; }
      d = await r.json();
    } catch (e) { continue; }
    const job = (d.jobs || []).reduce((a, b) => (!a || b.id > a.id ? b : a), null) || {};
    const running = d.state === "queued" && job.state === "running";
    cell.querySelector(".state-text").textContent = running ? "indexing" + (job.attempts > 1 ? " (attempt " + job.attempts + ")" : "") : d.state;
    cell.className = "state state-" + (running ? "running" : d.state);
    const chunks = cell.parentElement.querySelector(".chunks");
    if (chunks) { chunks.textContent = d.chunks; }
    if (d.state === "indexed" || d.state === "failed") {
      if (d.state === "failed" && d.job_error) {
        const why = document.createElement("span");
        why.className = "error";
        why.textContent = d.job_error;
        cell.appendChild(document.createElement("br"));
        cell.appendChild(why);
      }
      cell.removeAttribute("data-follow");
      return;
    }
  }
}

// Policy editor: line numbers that follow the text, Activate withdrawn once the content
// changes after a validation, an error's link moves the caret to its line and column.
function editor() {
  const area = document.getElementById("content");
  const gutter = document.getElementById("gutter");
  const activate = document.getElementById("activate");
  const validated = area.value;
  const renumber = () => {
    const lines = area.value.split("\n").length;
    const have = gutter.children.length;
    for (let n = have + 1; n <= lines; n++) {
      const s = document.createElement("span");
      s.id = "L" + n;
      s.textContent = String(n);
      gutter.appendChild(s);
      gutter.appendChild(document.createTextNode("\n"));
    }
    while (gutter.children.length > lines) {
      const last = gutter.lastElementChild;
      if (last.nextSibling) { last.nextSibling.remove(); }
      last.remove();
    }
  };
  area.addEventListener("input", () => {
    renumber();
    if (activate && area.value !== validated) { activate.disabled = true; }
  });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  document.querySelectorAll("[data-line]").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    const line = Number(a.getAttribute("data-line"));
    const col = Math.max(1, Number(a.getAttribute("data-col")));
    const lines = area.value.split("\n");
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) { at += lines[i].length + 1; }
    at += Math.min(col - 1, (lines[line - 1] || "").length);
    area.focus();
    area.setSelectionRange(at, at);
    area.scrollTop = Math.max(0, (line - 3) * parseFloat(getComputedStyle(area).lineHeight || "20"));
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ask");
  if (form) { form.addEventListener("submit", ask); }
  if (document.getElementById("dropzone")) { library(); }
  if (document.getElementById("chat-form")) { chat(); }
  if (document.getElementById("content") && document.getElementById("gutter")) { editor(); }
});
