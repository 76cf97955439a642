// The Chat view in a real browser (Debian's Chromium, driven by playwright-core): ana starts
// a chat, asks three questions from the keyboard (the second and third only make sense
// after the first), watches each answer stream in with the standalone question it was
// rewritten into, opens a citation, gives feedback (helpful, and a correction), renames
// the chat, reloads it; cole cannot open it; ana deletes it. Prints one JSON object of
// findings; the Rust test (tests/web_chat.rs) asserts on it.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const QUESTIONS = JSON.parse(process.env.QUESTIONS);
const found = { errors: [], turns: [] };

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

async function signIn(page, name) {
  await page.goto(BASE + "/ui/login?next=/ui/chat");
  await page.fill("#name", name);
  await page.fill("#password", process.env.PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
}

function watch(page) {
  page.on("pageerror", (e) => found.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) { found.errors.push(m.text()); } });
}

async function ana(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await signIn(page, "ana");
  found.after_login = page.url();
  found.nav = await page.$$eval("nav a", (x) => x.map((a) => a.textContent));
  const r = await page.goto(BASE + "/ui/chat");
  found.csp = r.headers()["content-security-policy"] || null;
  found.empty_list = await page.textContent(".conversations .empty");
  await shot(page, "20-chat-empty");

  // New chat, from the keyboard: focus the button, Enter
  await page.focus("#new-chat");
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  found.chat_url = page.url();
  const id = await page.getAttribute("#chat-form", "data-conversation");
  found.conversation = id;
  found.focused = await page.evaluate(() => document.activeElement && document.activeElement.id);

  for (let i = 0; i < QUESTIONS.length; i++) {
    // typed into the message box; Shift+Enter is a new line, Enter sends
    await page.focus("#message");
    await page.keyboard.type(QUESTIONS[i]);
    if (i === 0) {
      await page.keyboard.press("Shift+Enter");
      found.newline_kept = (await page.inputValue("#message")).endsWith("\n");
      await page.keyboard.press("Backspace");
    }
    const before = await page.$$eval("#turns li.turn:not(.pending)", (x) => x.length);
    // the stored turn is shown by loading the page again (a fragment change alone is not)
    const navigated = page.waitForEvent("load", { timeout: 240000 });
    await page.keyboard.press("Enter");
    // while it streams: the pending turn with the question as typed, then the rewritten one
    await page.waitForSelector("#turns li.pending", { timeout: 10000 });
    const streamed = await page.waitForFunction(() => {
      const li = document.querySelector("#turns li.pending");
      const reply = li && li.querySelector(".reply");
      return reply && reply.textContent.length > 0 ? { rewritten: li.querySelector(".rewritten").textContent, partial: reply.textContent } : null;
    }, null, { timeout: 240000 }).then((h) => h.jsonValue()).catch(() => null);
    if (i === 1) { await shot(page, "21-chat-streaming"); }
    await navigated;
    const error = await page.evaluate(() => { const e = document.getElementById("chat-error"); return e && !e.hidden ? e.textContent : null; });
    const turns = await page.$$eval("#turns li.turn", (lis) => lis.map((li) => ({
      asked: li.querySelector(".asked").textContent.replace(/\s+/g, " ").trim(),
      rewritten: li.querySelector(".rewritten q") ? li.querySelector(".rewritten q").textContent : null,
      answer: li.querySelector(".reply") ? li.querySelector(".reply").textContent : null,
      sources: Array.from(li.querySelectorAll(".sources a")).map((a) => ({ text: a.textContent, href: a.getAttribute("href") })),
      model: li.querySelector("p.meta:not(.rewritten)") ? li.querySelector("p.meta:not(.rewritten)").textContent : null,
    })));
    found.turns.push({ before, after: turns.length, streamed, error, turn: turns[turns.length - 1] });
  }
  await shot(page, "22-chat-thread");

  // a citation of the third turn opens its passage
  const last = found.turns[found.turns.length - 1].turn;
  if (last && last.sources.length) {
    await page.goto(BASE + last.sources[0].href);
    found.citation = { url: page.url(), title: await page.textContent(".opened h1") };
    await page.goBack();
  }

  // feedback: helpful on turn 1, a correction on turn 2, kept after a reload
  await page.click('button[aria-label="Helpful (turn 1)"]');
  await page.waitForFunction(() => document.querySelector('.feedback[data-seq="1"] .feedback-state').textContent.includes("helpful"));
  await page.click('.feedback[data-seq="2"] summary');
  await page.fill("#correction-2", "Use soap and water when hands are visibly soiled.");
  await page.fill("#note-2", "the answer missed the soiled-hands rule");
  await page.click('.feedback[data-seq="2"] .send-correction');
  await page.waitForFunction(() => document.querySelector('.feedback[data-seq="2"] .feedback-state').textContent.includes("correction"));
  await page.reload();
  found.feedback_after_reload = await page.$$eval(".feedback-state", (x) => x.map((s) => s.textContent.trim()));
  await shot(page, "23-chat-feedback");
  found.api_thread = await page.evaluate(async (id) => (await fetch("/v1/conversations/" + id + "?purpose=operations")).json(), id);

  // renamed; the list shows it
  await page.click(".manage summary");
  await page.fill("#title", "Hand hygiene and visitors");
  await Promise.all([page.waitForNavigation(), page.click('.manage button:text-is("Rename")')]);
  found.renamed_title = await page.textContent("#thread-title");
  found.list = await page.$$eval("#conversation-list a", (x) => x.map((a) => ({ text: a.textContent, current: a.getAttribute("aria-current") })));

  // narrow window: the list above the thread, nothing sideways
  await page.setViewportSize({ width: 420, height: 900 });
  await page.reload();
  found.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(page, "24-chat-narrow");
  await page.setViewportSize({ width: 1280, height: 900 });
  return { context, page, id };
}

async function cole(browser, id) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await signIn(page, "cole");
  const r = await page.goto(BASE + "/ui/chat/" + id + "?purpose=operations");
  found.cole_status = r.status();
  found.cole_error = await page.textContent(".error").catch(() => null);
  found.cole_list = await page.$$eval("#conversation-list a", (x) => x.map((a) => a.textContent));
  found.cole_thread = await page.$$eval("#turns li", (x) => x.length);
  const csrf = await page.getAttribute('meta[name="csrf-token"]', "content");
  found.cole_delete = await page.evaluate(async ([id, csrf]) => {
    const r = await fetch("/ui/chat/" + id + "/delete", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "csrf=" + encodeURIComponent(csrf) });
    return r.status;
  }, [id, csrf]);
  await shot(page, "25-chat-not-yours");
  await context.close();
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const { context, page, id } = await ana(browser);
  await cole(browser, id);
  // ana deletes it: gone from the list
  await page.goto(BASE + "/ui/chat/" + id);
  await page.click(".manage summary");
  await Promise.all([page.waitForNavigation(), page.click("#delete-chat")]);
  found.delete_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.list_after_delete = await page.$$eval("#conversation-list a", (x) => x.map((a) => a.textContent));
  await context.close();
  await browser.close();
  console.log("FOUND " + JSON.stringify(found));
})().catch((e) => { console.error(e); console.log("FOUND " + JSON.stringify(found)); process.exit(1); });
