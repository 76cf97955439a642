// The web UI in a real browser (Debian's Chromium, driven by playwright-core): sign in,
// search, an XSS payload in a title rendered as text, the CSP on every page, a cross-site
// POST without the CSRF token refused, the Ask page streaming an answer, sign out.
// Prints one JSON object of findings; the Rust test (tests/web.rs) asserts on it.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const found = { csp: {}, errors: [] };

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => found.errors.push(String(e)));
  // script errors and CSP violations ("Refused to ..."); a page answered with an error
// status (the 401 of a wrong password) is not one
page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) { found.errors.push(m.text()); } });

  // a page needing a session sends the browser to sign in, and back afterwards
  let r = await page.goto(BASE + "/ui/search?q=visitors");
  found.login_url = page.url();
  found.csp.login = r.headers()["content-security-policy"] || null;
  await shot(page, "01-sign-in");
  await page.fill("#name", "ana");
  await page.fill("#password", "not the password");
  await page.click("button[type=submit]");
  found.wrong_password = await page.textContent(".error");
  await page.fill("#password", process.env.PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL("**/ui/search**");
  found.after_login = page.url();

  // search: hybrid results with the document's title (an XSS payload shown as text)
  await page.fill("#q", "visitors at a bedside in intensive care");
  await Promise.all([page.waitForNavigation(), page.click("form.query button[type=submit]")]);
  r = await page.reload();
  found.csp.search = r.headers()["content-security-policy"] || null;
  found.titles = await page.$$eval(".passage h2", (hs) => hs.map((h) => h.textContent));
  found.xss_fired = await page.evaluate(() => window.__xss === 1);
  found.injected_img = await page.$$eval(".passage h2 img", (x) => x.length);
  await shot(page, "02-search");
  await page.goto(BASE + "/ui/search");
  found.empty_state = await page.textContent(".empty");

  // keyboard: the skip link is the first stop
  await page.keyboard.press("Tab");
  found.first_focus = await page.evaluate(() => document.activeElement && document.activeElement.textContent);

  // a cross-site POST without the CSRF token is refused (the cookie alone is not enough)
  const xsite = await context.request.post(BASE + "/v1/search", { data: { query: "visitors", purpose: "operations" } });
  found.post_without_csrf = xsite.status();
  const logoutForged = await context.request.post(BASE + "/ui/logout", { form: { csrf: "forged" } });
  found.logout_forged = logoutForged.status();

  // Ask: the answer streams in
  r = await page.goto(BASE + "/ui/ask");
  found.csp.ask = r.headers()["content-security-policy"] || null;
  await page.fill("#question", "How many visitors may be at a bedside in intensive care?");
  await page.selectOption("#purpose", "operations");
  await page.click("#ask button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#sources li").length > 0 || !document.getElementById("ask-error").hidden, null, { timeout: 120000 });
  found.answer = await page.textContent("#answer-text");
  found.sources = await page.$$eval("#sources li", (x) => x.map((l) => l.textContent));
  found.ask_error = await page.evaluate(() => { const e = document.getElementById("ask-error"); return e.hidden ? null : e.textContent; });
  await shot(page, "03-ask");

  // Library: the uploaded document with its state; an upload from the page, indexed, deleted
  r = await page.goto(BASE + "/ui/library");
  found.csp.library = r.headers()["content-security-policy"] || null;
  found.library_rows = await page.$$eval("table.documents tbody tr", (rows) => rows.map((t) => t.textContent.replace(/\s+/g, " ").trim()));
  await page.setInputFiles("#file", [{ name: "parking.txt", mimeType: "text/plain", buffer: Buffer.from("Staff parking is in garage B; the gate opens with the badge from 6 am.") }]);
  await page.fill("#groups", "clinical");
  await page.fill("#region", "us");
  await Promise.all([page.waitForNavigation(), page.click("form.query button[type=submit]")]);
  found.upload_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  for (let i = 0; i < 100; i++) {
    await page.goto(BASE + "/ui/library");
    const states = await page.$$eval("table.documents tbody tr", (rows) => rows.map((t) => t.textContent));
    if (states.some((t) => t.includes("parking.txt") && t.includes("indexed"))) { break; }
    await page.waitForTimeout(300);
  }
  found.library_after_upload = await page.$$eval("table.documents tbody tr", (rows) => rows.map((t) => t.textContent.replace(/\s+/g, " ").trim()));
  await shot(page, "05-library");
  await Promise.all([page.waitForNavigation(), page.click('tr:has-text("parking.txt") button')]);
  found.delete_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.library_after_delete = await page.$$eval("table.documents tbody tr", (rows) => rows.map((t) => t.textContent.replace(/\s+/g, " ").trim()));

  // narrow window: still usable
  await page.setViewportSize({ width: 420, height: 900 });
  await page.goto(BASE + "/ui/search?q=visitors&purpose=operations");
  found.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(page, "04-search-narrow");

  // sign out
  await page.setViewportSize({ width: 1280, height: 900 });
  await Promise.all([page.waitForNavigation(), page.click(".signout button")]);
  found.after_logout = page.url();
  r = await page.goto(BASE + "/ui/search");
  found.after_logout_search = page.url();
  await browser.close();
  console.log("FOUND " + JSON.stringify(found));
})().catch((e) => { console.error(e); process.exit(1); });
