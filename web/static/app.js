// Sanctum's one script (no inline script anywhere: the pages run under a strict CSP).
// The Ask page streams its answer from POST /v1/ask as server-sent events.
"use strict";

function csrfToken() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.getAttribute("content") : "";
}

function show(el, on) { if (el) { el.hidden = !on; } }

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
          const li = document.createElement("li");
          li.textContent = "[" + (i + 1) + "] " + (s.title || s.document_name) + " — " + s.text;
          sources.appendChild(li);
        });
      } else if (name === "error") {
        error.textContent = payload.error ? payload.error.message : "The answer failed.";
        show(error, true);
      }
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ask");
  if (form) { form.addEventListener("submit", ask); }
});
