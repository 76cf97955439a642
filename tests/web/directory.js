// Directory sign-in in a real browser (Debian's Chromium, driven by playwright-core): nina
// signs in through the OpenID Provider's own login page and lands on Search with the
// groups her provider groups map to; a replayed callback is refused; she is moved out of
// the ICU group at the provider, signs out (here and at the provider) and in again, and
// the ICU passage is gone; lena signs in with her LDAP password on the same form; a
// visitor in no mapped group is told plainly that they have no access. Prints one JSON
// object of findings; the Rust test (tests/web_directory.rs) asserts on it.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const found = { errors: [] };
let page = null;

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

async function titles(page, q) {
  await page.goto(BASE + "/ui/search?purpose=treatment&q=" + encodeURIComponent(q));
  return page.$$eval(".passage h2", (x) => x.map((e) => e.textContent.trim()));
}

// "Sign in with ..." and the provider's own login form (oidc-provider's).
async function sso(page, login, name) {
  await page.goto(BASE + "/ui/login?next=/ui/search");
  await page.click("#sso");
  await page.waitForSelector("input[name=login]");
  if (name) await shot(page, name);
  await page.fill("input[name=login]", login);
  await page.fill("input[name=password]", "provider password");
  await page.click("button[type=submit]");
}

async function signOut(page) {
  await page.click(".signout button");
  // a provider user is sent on to the provider's sign-out, which asks first
  await page.waitForURL((u) => u.pathname === "/ui/login" || u.pathname.startsWith("/session/end"));
  if (new URL(page.url()).pathname.startsWith("/session/end")) {
    await page.waitForSelector("button[value=yes]");
    await page.click("button[value=yes]");
    await page.waitForURL((u) => u.pathname === "/ui/login");
  }
  return page.url();
}

async function run(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("pageerror", (e) => found.errors.push(String(e)));
  page.on("request", (r) => { if (r.url().includes("/ui/oidc/callback") && !found.callback) found.callback = r.url(); });

  await page.goto(BASE + "/ui/login");
  found.sso_button = (await page.textContent("#sso")).trim();
  await shot(page, "26-sign-in-with-provider");
  await sso(page, "nina", "27-provider-login");
  await page.waitForURL("**/ui/search**");
  await shot(page, "28-signed-in-through-provider");
  found.user = (await page.textContent(".who")).trim();
  found.first = await titles(page, "How often is sedation depth assessed in intensive care?");

  // the callback again: without the browser's state cookie, and with it
  await page.goto(found.callback);
  found.replay_elsewhere = await page.textContent("main");
  const state = new URL(found.callback).searchParams.get("state");
  await context.addCookies([{ name: "sanctum_oidc_state", value: state, domain: "localhost", path: "/ui/oidc", secure: true, httpOnly: true, sameSite: "Lax" }]);
  await page.goto(found.callback);
  found.replay_here = await page.textContent("main");
  await shot(page, "29-callback-replayed");

  // moved out of the ICU group at the provider: at the next sign-in the ICU passage is gone
  fs.writeFileSync(process.env.PEOPLE_FILE, process.env.PEOPLE_AFTER);
  await page.goto(BASE + "/ui/search");
  found.after_signout = await signOut(page);
  await sso(page, "nina");
  await page.waitForURL("**/ui/search**");
  found.second = await titles(page, "How often is sedation depth assessed in intensive care?");
  await shot(page, "30-after-group-removal");
  await signOut(page);

  // LDAP: the directory password on the same form
  await page.fill("#name", "lena");
  await page.fill("#password", process.env.LDAP_PASSWORD);
  await Promise.all([page.waitForURL("**/ui/search**"), page.click("form[action='/ui/login'] button[type=submit]")]);
  found.ldap_user = (await page.textContent(".who")).trim();
  found.ldap = await titles(page, "How often is sedation depth assessed in intensive care?");
  await signOut(page);

  // someone in no mapped group
  await sso(page, "victor");
  await page.waitForURL("**/ui/oidc/callback**");
  found.no_access = await page.textContent("main");
  await shot(page, "31-no-access");

  // the break-glass administrator (a local account) sees where each person comes from
  await page.goto(BASE + "/ui/login?next=/ui/people");
  await page.fill("#name", "root-admin");
  await page.fill("#password", process.env.ADMIN_PASSWORD);
  await Promise.all([page.waitForURL("**/ui/people**"), page.click("form[action='/ui/login'] button[type=submit]")]);
  found.people = await page.$$eval("#users tbody tr", (rows) => rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent.trim().replace(/\s+/g, " "))));
  await shot(page, "32-people-directory-users");
  await page.goto(BASE + "/ui/people/nina");
  found.nina_page = (await page.textContent("#directory-user")).trim().replace(/\s+/g, " ");
  found.nina_fields = await page.$$eval("form.query input", (xs) => xs.map((x) => x.name).filter((n) => n));
  await context.close();
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    await run(browser);
  } catch (e) {
    found.errors.push(String(e && e.stack || e));
    if (page) {
      found.failed_at = page.url();
      found.failed_page = (await page.textContent("body").catch(() => "")).slice(0, 2000);
      await shot(page, "zz-directory-failure").catch(() => {});
    }
  } finally {
    await browser.close();
  }
  console.log("FOUND " + JSON.stringify(found));
})();
