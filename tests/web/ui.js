// The web UI in a real browser (Debian's Chromium, driven by playwright-core). Two people:
// ana, an analyst (sign in, search with filters, a redacted PHI passage, ask and open a
// citation, upload by drag and drop and watch it index, delete), and pat, a privacy
// officer (edit a policy with a syntax error, see the line, fix it, run the tests, compare,
// activate; the audit trail with its chain verified; people and tokens). Prints one JSON
// object of findings; the Rust test (tests/web.rs) asserts on it.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const found = { csp: {}, errors: [] };

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

// each row's cells' text joined by a space (or an element's text), whitespace collapsed
const rowsOf = (page, selector) => page.$$eval(selector, (rows) => rows.map((t) => (t.cells ? Array.from(t.cells).map((c) => c.textContent).join(" ") : t.textContent).replace(/\s+/g, " ").trim()));

async function signIn(page, name, password) {
  await page.goto(BASE + "/ui/login");
  await page.fill("#name", name);
  await page.fill("#password", password);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
}

function watch(page) {
  page.on("pageerror", (e) => found.errors.push(String(e)));
  // script errors and CSP violations ("Refused to ..."); a page answered with an error
  // status (the 401 of a wrong password) is not one
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) { found.errors.push(m.text()); } });
}

async function analyst(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page);

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
  found.analyst_nav = await page.$$eval("nav a", (x) => x.map((a) => a.textContent));

  // search: hybrid results with the document's title (an XSS payload shown as text)
  await page.fill("#q", "visitors at a bedside in intensive care");
  await Promise.all([page.waitForNavigation(), page.click("form.query button[type=submit]")]);
  r = await page.reload();
  found.csp.search = r.headers()["content-security-policy"] || null;
  found.titles = await page.$$eval(".passage h2", (hs) => hs.map((h) => h.textContent));
  found.xss_fired = await page.evaluate(() => window.__xss === 1);
  found.injected_img = await page.$$eval(".passage h2 img", (x) => x.length);
  await shot(page, "02-search");
  // filters: leaving out the label of the PHI note drops it; the filters survive reload
  await page.goto(BASE + "/ui/search?q=chest+pain+aspirin&purpose=operations&exclude_labels=phi&k=5");
  found.filtered_titles = await page.$$eval(".passage h2", (hs) => hs.map((h) => h.textContent));
  found.filter_kept = await page.inputValue("#exclude_labels");
  await page.goto(BASE + "/ui/search");
  found.empty_state = await page.textContent(".empty");

  // PHI: ana may not see it; the passage is redacted in the page exactly as in the API
  await page.goto(BASE + "/ui/search?q=chest+pain+aspirin+admitted&purpose=operations");
  found.phi_results = await rowsOf(page, ".passage");
  const csrf = await page.getAttribute('meta[name="csrf-token"]', "content");
  found.phi_api = await page.evaluate(async (csrf) => {
    const r = await fetch("/v1/search", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ query: "chest pain aspirin admitted", purpose: "operations" }) });
    const v = await r.json();
    return v.passages.filter((p) => p.labels.includes("phi")).map((p) => ({ text: p.text, redacted: p.redacted }));
  }, csrf);
  found.phi_page_texts = await page.$$eval(".passage", (ps) => ps.filter((p) => p.textContent.includes("Cardiology")).map((p) => p.querySelector(".text").textContent));
  await shot(page, "03-search-redacted");
  const phiLink = await page.$$eval(".passage", (ps) => ps.filter((p) => p.textContent.includes("Cardiology")).map((p) => p.querySelector("h2 a").getAttribute("href"))[0]);
  if (phiLink) {
    await page.goto(BASE + phiLink);
    found.phi_opened = await page.textContent(".opened .text");
    found.phi_opened_labels = await page.$$eval(".opened .label", (x) => x.map((l) => l.textContent));
  }

  // keyboard: the skip link is the first stop
  await page.goto(BASE + "/ui/search");
  await page.keyboard.press("Tab");
  found.first_focus = await page.evaluate(() => document.activeElement && document.activeElement.textContent);

  // a cross-site POST without the CSRF token is refused (the cookie alone is not enough)
  const xsite = await context.request.post(BASE + "/v1/search", { data: { query: "visitors", purpose: "operations" } });
  found.post_without_csrf = xsite.status();
  const logoutForged = await context.request.post(BASE + "/ui/logout", { form: { csrf: "forged" } });
  found.logout_forged = logoutForged.status();
  // an analyst may not open the admin pages
  found.analyst_policies = (await context.request.get(BASE + "/ui/policies")).status();
  found.analyst_audit = (await context.request.get(BASE + "/ui/audit")).status();

  // Ask: the answer streams in; a citation opens the passage, highlighted
  r = await page.goto(BASE + "/ui/ask");
  found.csp.ask = r.headers()["content-security-policy"] || null;
  await page.fill("#question", "How many visitors may be at a bedside in intensive care?");
  await page.selectOption("#purpose", "operations");
  await page.click("#ask button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#sources li").length > 0 || !document.getElementById("ask-error").hidden, null, { timeout: 120000 });
  found.answer = await page.textContent("#answer-text");
  found.sources = await page.$$eval("#sources li", (x) => x.map((l) => l.textContent));
  found.ask_error = await page.evaluate(() => { const e = document.getElementById("ask-error"); return e.hidden ? null : e.textContent; });
  await shot(page, "04-ask");
  const cited = await page.$$eval("#sources li a", (x) => x.map((a) => ({ href: a.getAttribute("href"), text: a.textContent })));
  const visitors = cited.find((c) => c.text.includes("Visitor rules")) || cited[0];
  if (visitors) {
    r = await page.goto(BASE + visitors.href);
    found.csp.passage = r.headers()["content-security-policy"] || null;
    found.citation = {
      url: page.url(),
      title: await page.textContent(".opened h1"),
      marked: await page.$$eval(".opened mark", (x) => x.map((m) => m.textContent)),
      meta: await page.textContent(".opened .meta"),
    };
    await shot(page, "05-passage");
  }

  // Library: the uploaded document with its state; a file dropped on the page, followed in
  // the page (no reload) until indexed, then deleted
  r = await page.goto(BASE + "/ui/library");
  found.csp.library = r.headers()["content-security-policy"] || null;
  found.library_rows = await rowsOf(page, "table.documents tbody tr");
  const dropped = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["Staff parking is in garage B; the gate opens with the badge from 6 am."], "parking.txt", { type: "text/plain" }));
    return dt;
  });
  await page.dispatchEvent("#dropzone", "drop", { dataTransfer: dropped });
  found.chosen = await page.$$eval("#chosen li", (x) => x.map((l) => l.textContent));
  await page.fill("#groups", "clinical");
  await page.fill("#region", "us");
  await Promise.all([page.waitForNavigation(), page.click("#upload button[type=submit]")]);
  found.upload_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.states_seen = [];
  const stateOf = () => page.evaluate(() => {
    const row = Array.from(document.querySelectorAll("table.documents tbody tr")).find((t) => t.textContent.includes("parking.txt"));
    return row ? row.querySelector(".state-text").textContent : null;
  });
  found.states_seen.push(await stateOf());
  for (let i = 0; i < 240; i++) {
    const s = await stateOf();
    if (found.states_seen[found.states_seen.length - 1] !== s) { found.states_seen.push(s); }
    if (s === "indexed" || s === "failed") { break; }
    await page.waitForTimeout(250);
  }
  found.library_after_upload = await rowsOf(page, "table.documents tbody tr");
  await shot(page, "06-library");
  await Promise.all([page.waitForNavigation(), page.click('tr:has-text("parking.txt") button')]);
  found.delete_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.library_after_delete = await rowsOf(page, "table.documents tbody tr");

  // narrow window: still usable
  await page.setViewportSize({ width: 420, height: 900 });
  await page.goto(BASE + "/ui/search?q=visitors&purpose=operations");
  found.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(page, "07-search-narrow");

  // sign out
  await page.setViewportSize({ width: 1280, height: 900 });
  await Promise.all([page.waitForNavigation(), page.click(".signout button")]);
  found.after_logout = page.url();
  await page.goto(BASE + "/ui/search");
  found.after_logout_search = page.url();
  await context.close();
}

async function officer(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await signIn(page, "pat", process.env.PASSWORD);
  found.officer_nav = await page.$$eval("nav a", (x) => x.map((a) => a.textContent));

  // Policies: versions, then the editor for access.rego
  let r = await page.goto(BASE + "/ui/policies");
  found.csp.policies = r.headers()["content-security-policy"] || null;
  found.versions_before = await rowsOf(page, "#versions tbody tr");
  await shot(page, "08-policies");
  await Promise.all([page.waitForNavigation(), page.click('a:text-is("access.rego")')]);
  const original = await page.inputValue("#content");
  // a syntax error on the last line: the line is marked, the error names line and column
  const broken = original.replace(/\n*$/, "") + "\nthis is not rego (((";
  found.broken_line = broken.split("\n").length;
  await page.fill("#content", broken);
  found.gutter_lines_typed = await page.$$eval("#gutter span", (x) => x.length);
  await Promise.all([page.waitForNavigation(), page.click('button[value="validate"]')]);
  found.marked_lines = await page.$$eval("#gutter .bad", (x) => x.map((s) => s.textContent));
  found.policy_errors = await page.$$eval(".validation .errors li", (x) => x.map((l) => l.textContent));
  found.activate_disabled_when_broken = await page.$eval("#activate", (b) => b.disabled);
  await page.click(".validation .errors a");
  found.caret_line = await page.$eval("#content", (t) => t.value.slice(0, t.selectionStart).split("\n").length);
  await shot(page, "09-policy-error");

  // fixed (with a comment line added): compare with the active version, run the tests, activate
  const fixed = original.replace(/\n*$/, "") + "\n# reviewed in the browser test\n";
  await page.fill("#content", fixed);
  await page.fill("#comment", "reviewed access rules");
  await Promise.all([page.waitForNavigation(), page.click('button[value="diff"]')]);
  found.diff_added = await page.$$eval("#diff .add", (x) => x.map((l) => l.textContent));
  await Promise.all([page.waitForNavigation(), page.click('button[value="validate"]')]);
  found.validation_title = await page.textContent(".validation h2");
  found.tests = await page.$$eval(".tests li", (x) => x.map((l) => l.textContent));
  found.coverage = await rowsOf(page, "#coverage tbody tr");
  found.activate_disabled_when_valid = await page.$eval("#activate", (b) => b.disabled);
  await shot(page, "10-policy-valid");
  await Promise.all([page.waitForNavigation(), page.click("#activate")]);
  found.after_activate = page.url();
  found.activate_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.versions_after = await rowsOf(page, "#versions tbody tr");
  found.history = await rowsOf(page, "#history tbody tr");

  // People: a user added with a password, a token created (shown once) and revoked
  r = await page.goto(BASE + "/ui/people");
  found.csp.people = r.headers()["content-security-policy"] || null;
  await page.click("text=Add a user");
  await page.fill("#name", "dana");
  await page.check('input[name="roles"][value="analyst"]');
  await page.fill("#region", "us");
  await page.fill("#groups", "clinical");
  await page.fill("#password", "another long passphrase");
  await Promise.all([page.waitForNavigation(), page.click('form[action="/ui/people"] button[type=submit]')]);
  found.user_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.users = await rowsOf(page, "#users tbody tr");
  await page.click("text=Create a token");
  await page.selectOption("#token-user", "dana");
  await page.fill("#label", "browser test");
  await page.check('input[name="scopes"][value="search"]');
  await Promise.all([page.waitForNavigation(), page.click('form[action="/ui/people/tokens"] button[type=submit]')]);
  found.new_token = await page.textContent("#new-token");
  const token = found.new_token.trim();
  found.token_works = (await context.request.get(BASE + "/v1/me", { headers: { Authorization: "Bearer " + token } })).status();
  await shot(page, "11-people");
  await Promise.all([page.waitForNavigation(), page.click('tr:has-text("browser test") button')]);
  found.tokens_after_revoke = await rowsOf(page, "#tokens tbody tr");
  found.token_after_revoke = (await context.request.get(BASE + "/v1/me", { headers: { Authorization: "Bearer " + token } })).status();

  // Model: the installed adapter listed, activated (recorded), the base model restored
  r = await page.goto(BASE + "/ui/models");
  found.csp.models = r.headers()["content-security-policy"] || null;
  found.adapter_rows = await rowsOf(page, "#adapters tbody tr");
  found.active_before = (await page.textContent("#active-adapter")).trim();
  await Promise.all([page.waitForNavigation(), page.click('button[aria-label="Activate synthetic"]')]);
  found.activate_adapter_notices = await page.$$eval(".notice", (x) => x.map((n) => n.textContent));
  found.active_after = (await page.textContent("#active-adapter")).trim();
  await shot(page, "12-model");
  await Promise.all([page.waitForNavigation(), page.click("text=Use the base model without an adapter")]);
  found.active_restored = (await page.textContent("#active-adapter")).trim();

  // Audit: the activation recorded, the chain verified, a record's detail, an export
  r = await page.goto(BASE + "/ui/audit?action=policy.activate");
  found.csp.audit = r.headers()["content-security-policy"] || null;
  found.audit_rows = await rowsOf(page, "#records tbody tr");
  await page.goto(BASE + "/ui/audit?actor=pat");
  found.audit_actions = await page.$$eval("#records tbody tr td:nth-child(4)", (x) => x.map((t) => t.textContent));
  await Promise.all([page.waitForNavigation(), page.click("#verify")]);
  found.chain = await page.textContent("#chain");
  await shot(page, "13-audit");
  await Promise.all([page.waitForNavigation(), page.click("#records tbody tr a")]);
  found.record_title = await page.textContent("h1");
  found.record_hash = await page.textContent("#hash-state");
  await shot(page, "14-audit-record");
  const exported = await context.request.get(BASE + "/v1/audit/export?format=csv&action=policy.activate");
  found.export_status = exported.status();
  found.export_has_activation = (await exported.text()).includes("policy.activate");
  await context.close();
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  await analyst(browser);
  await officer(browser);
  await browser.close();
  console.log("FOUND " + JSON.stringify(found));
})().catch((e) => { console.error(e); console.log("FOUND " + JSON.stringify(found)); process.exit(1); });
