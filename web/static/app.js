// Sanctum's one script (no inline script anywhere: the pages run under a strict CSP).
// The Ask page streams its answer from POST /v1/ask as server-sent events.
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
    const problem = await response.json().catch(() => null);
    error.textContent = problem && problem.error ? problem.error.message : "The question was refused (" + response.status + ").";
    show(error, true);
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { break; }
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const name = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (!data) { continue; }
      const payload = JSON.parse(data);
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
    }
  }
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
  if (document.getElementById("content") && document.getElementById("gutter")) { editor(); }
});
