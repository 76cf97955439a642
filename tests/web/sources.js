// The Sources page in a real browser (Debian's Chromium, driven by playwright-core): pat,
// a privacy officer, opens Sources, syncs the configured folder (one file refused: a link
// pointing outside), reads the run's history and what was not synced, adds a second folder
// from the form (a bad name first), syncs it and removes it; ana, an analyst, finds the
// synced file in the Library as "source: path" and gets 403 on Sources. Prints one JSON
// object of findings; the Rust test (tests/web_sources.rs) asserts on it.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const found = { errors: [] };

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

async function signIn(context, name, next) {
  const page = await context.newPage();
  page.on("pageerror", (e) => found.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) { found.errors.push(m.text()); } });
  await page.goto(BASE + "/ui/login?next=" + next);
  await page.fill("#name", name);
  await page.fill("#password", process.env.PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  return page;
}

async function officer(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await signIn(context, "pat", "/ui/sources");
  found.nav = await page.$$eval("nav a", (x) => x.map((a) => a.textContent));
  const r = await page.goto(BASE + "/ui/sources");
  found.csp = r.headers()["content-security-policy"] || null;
  found.never = await page.textContent("#source-wards .empty");
  await Promise.all([page.waitForNavigation(), page.click("button[aria-label='Sync wards now']")]);
  found.sync_notice = await page.textContent(".notice");
  found.run_states = await page.$$eval("#source-wards .runs tbody tr .label", (x) => x.map((n) => n.textContent));
  found.documents = await page.textContent("#source-wards .documents-count");
  await page.click("#source-wards details summary");
  found.problems = await page.$$eval("#source-wards .problems li", (x) => x.map((n) => n.textContent));
  await shot(page, "33-sources-synced");

  // a second folder from the form: a bad name is refused with the reason, then a good one
  await page.fill("input[name=name]", "Bad Name");
  await page.fill("input[name=path]", process.env.SECOND);
  await page.evaluate(() => document.querySelector("input[name=name]").removeAttribute("pattern"));
  await Promise.all([page.waitForNavigation(), page.click("form.stacked button[type=submit]")]);
  found.bad_name = await page.textContent(".error");
  await page.fill("input[name=name]", "forms");
  await page.fill("input[name=path]", process.env.SECOND);
  await page.fill("input[name=groups]", "clinical");
  await page.fill("input[name=every_minutes]", "0");
  await Promise.all([page.waitForNavigation(), page.click("form.stacked button[type=submit]")]);
  found.added_notice = await page.textContent(".notice");
  await Promise.all([page.waitForNavigation(), page.click("button[aria-label='Sync forms now']")]);
  found.forms_documents = await page.textContent("#source-forms .documents-count");
  await shot(page, "34-sources-added");
  await Promise.all([page.waitForNavigation(), page.click("button[aria-label='Remove forms and its documents']")]);
  found.removed_notice = await page.textContent(".notice");
  found.sources_left = await page.$$eval("section.source h2", (x) => x.map((n) => n.textContent));
  found.remove_offered_for_config = await page.$$eval("#source-wards button.danger", (x) => x.length);
  await context.close();
}

async function analyst(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await signIn(context, "ana", "/ui/library");
  found.library_names = await page.$$eval("table.documents .meta", (x) => x.map((n) => n.textContent));
  found.library_delete_buttons = await page.$$eval("table.documents form[action$='/delete']", (x) => x.length);
  await shot(page, "35-library-synced-document");
  const r = await page.goto(BASE + "/ui/sources");
  found.analyst_sources = r.status();
  await context.close();
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  await officer(browser);
  await analyst(browser);
  await browser.close();
  console.log("FOUND " + JSON.stringify(found));
})().catch((e) => { console.error(e); console.log("FOUND " + JSON.stringify(found)); process.exit(1); });
