// The dashboard, driven in headless Chromium (see run.sh). Fails with a message naming what
// a user would see wrong.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT);

const [base, executablePath, shots, appid, secret, adminToken, mirrorBase] = process.argv.slice(2);
const VIEWS = {
  followers: ["followers-cumulate", "followers-channels"],
  messages: ["messages-types", "messages-heatmap", "messages-distribution"],
  articles: ["articles-reads", "articles-send-0"],
  published: ["published-day", "published-scenes", "published-send-0"],
  interface: ["interface-calls", "interface-time", "interface-hours"],
};

function check(ok, what) {
  if (!ok) throw new Error(what);
}

// Every chart of the view: its data points that are not empty, and the pixels it painted.
async function drawn(page) {
  return page.evaluate(() =>
    window.__dc.charts().map(({ id, chart }) => {
      const points = chart
        .getOption()
        .series.reduce(
          (n, s) => n + (s.data || []).filter((v) => v !== null && v !== 0 && !(Array.isArray(v) && !v[2])).length,
          0,
        );
      const canvas = chart.getDom().querySelector("canvas");
      const ctx = canvas.getContext("2d");
      const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let i = 0; i < img.length; i += 4) if (img[i + 3] > 0 && (img[i] < 235 || img[i + 1] < 235 || img[i + 2] < 235)) painted++;
      return { id, points, painted };
    }),
  );
}

async function waitReady(page, view) {
  await page.waitForFunction(
    (v) => window.__dc.ready && document.querySelector("#tabs button.active").dataset.view === v,
    view,
    { timeout: 30000 },
  );
}

async function signInAccount(page) {
  await page.goto(base + "/");
  await page.fill('#account-form input[name="appid"]', appid);
  await page.fill('#account-form input[name="secret"]', secret);
  await page.click('#account-form button[type="submit"]');
  await waitReady(page, "followers");
  check(await page.isHidden("#signin"), "the sign-in forms are still shown after signing in");
  check(await page.isVisible("#board"), "the board is not shown after signing in");
}

function watch(page, errors) {
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
}

(async () => {
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
  const report = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    const errors = [];
    watch(page, errors);

    // Sign in with the demo account; the first view is timed from the click.
    await signInAccount(page);
    const first = await page.evaluate(() => window.__dc.firstView);
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      return { domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd };
    });
    report.firstViewMs = Math.round(first.ms);
    report.pageLoadMs = Math.round(nav.load);
    check(first.view === "followers", "the first view is the followers view");
    check(first.ms < 1000, `the first view took ${Math.round(first.ms)} ms (target: under 1 s)`);

    // Every view: every chart has drawn data.
    for (const [view, ids] of Object.entries(VIEWS)) {
      if (view !== "followers") {
        await page.click(`#tabs button[data-view="${view}"]`);
        await waitReady(page, view);
      }
      const charts = await drawn(page);
      for (const id of ids) check(charts.some((c) => c.id === id), `${view}: no chart ${id} (${charts.map((c) => c.id)})`);
      for (const c of charts) {
        check(c.points > 0, `${view}: chart ${c.id} has no data`);
        // A sparkline of a send from yesterday is one dot.
        const least = /-send-/.test(c.id) ? 20 : 200;
        check(c.painted > least, `${view}: chart ${c.id} painted only ${c.painted} pixels`);
      }
      const shown = await page.evaluate(() => window.__dc.errors);
      check(shown.length === 0, `${view}: the page shows errors: ${shown}`);
      await page.screenshot({ path: path.join(shots, `${view}.png`), fullPage: true });
      report[view] = charts.length + " charts";
    }

    // CSV of what is shown: the interface view's daily rows.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click('button[data-csv="getinterfacesummary"]'),
    ]);
    const csvText = fs.readFileSync(await download.path(), "utf8").replace(/^\ufeff/, "");
    const lines = csvText.trim().split("\n");
    check(lines[0] === "ref_date,callback_count,fail_count,total_time_cost,max_time_cost", `CSV header: ${lines[0]}`);
    check(lines.length === 31, `CSV of 30 days has ${lines.length - 1} rows`);
    report.csvRows = lines.length - 1;
    // A title a spreadsheet would run as a formula is written as text; numbers stay numbers.
    const hostile = await page.evaluate(() =>
      window.__dc.csv([{ title: '=HYPERLINK("http://evil.example","x")', n: 3, t: "@SUM(A1)", d: "-1+2" }]),
    );
    check(
      hostile === 'title,n,t,d\n"\'=HYPERLINK(""http://evil.example"",""x"")",3,\'@SUM(A1),\'-1+2\n',
      `CSV cells are neutralised: ${JSON.stringify(hostile)}`,
    );
    // The page works under its Content-Security-Policy (a violation would be a console error).
    const policy = (await page.request.get(base + "/")).headers()["content-security-policy"] || "";
    check(policy.includes("script-src 'self'"), `the page's CSP: ${policy}`);

    // A 90-day range is fetched in chunks of each endpoint's span (getusersummary: 7 days).
    await page.click('#tabs button[data-view="followers"]');
    await waitReady(page, "followers");
    const asked = [];
    const count = (r) => {
      const m = r.url().match(/\/datacube\/(getusersummary|getusercumulate)\?/);
      if (m) asked.push(JSON.parse(r.postData()));
    };
    page.on("request", count);
    await page.click('.presets button[data-days="90"]');
    await page.waitForFunction(() => window.__dc.ready && document.querySelector("#from").value !== "", null, { timeout: 30000 });
    await waitReady(page, "followers");
    page.off("request", count);
    check(asked.length === 2 * 13, `90 days of two 7-day endpoints took ${asked.length} calls, not 26`);
    for (const b of asked) {
      const days = (Date.parse(b.end_date) - Date.parse(b.begin_date)) / 86400000 + 1;
      check(days >= 1 && days <= 7, `a call asked for ${days} days: ${JSON.stringify(b)}`);
    }
    const xLen = await page.evaluate(() =>
      window.__dc.charts().find((c) => c.id === "followers-cumulate").chart.getOption().xAxis[0].data.length,
    );
    check(xLen === 90, `the 90-day chart has ${xLen} days`);
    report.ninetyDayCalls = asked.length;
    check(errors.length === 0, `the page logged errors: ${errors.join("; ")}`);
    await context.close();

    // A phone: readable, nothing wider than the screen.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const p2 = await phone.newPage();
    const phoneErrors = [];
    watch(p2, phoneErrors);
    await signInAccount(p2);
    for (const view of ["messages", "articles", "published"]) {
      await p2.click(`#tabs button[data-view="${view}"]`);
      await waitReady(p2, view);
      const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${view} on a phone is ${overflow} px wider than the screen`);
      const charts = await drawn(p2);
      for (const c of charts) check(c.points > 0 && c.painted > 100, `${view} on a phone: chart ${c.id} is empty`);
      await p2.screenshot({ path: path.join(shots, `phone-${view}.png`), fullPage: false });
    }
    check(phoneErrors.length === 0, `the page logged errors on a phone: ${phoneErrors.join("; ")}`);
    await phone.close();

    // The administrator: every account, read through the admin API.
    const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p3 = await admin.newPage();
    const adminErrors = [];
    watch(p3, adminErrors);
    await p3.goto(base + "/");
    await p3.fill('#admin-form input[name="token"]', adminToken);
    await p3.click('#admin-form button[type="submit"]');
    await waitReady(p3, "followers");
    const options = await p3.evaluate(() => [...document.querySelectorAll("#account option")].map((o) => o.value));
    check(options.includes(appid), `the administrator's account list ${options} lacks ${appid}`);
    await p3.selectOption("#account", appid);
    await p3.click('#tabs button[data-view="interface"]');
    await waitReady(p3, "interface");
    const adminCharts = await drawn(p3);
    check(adminCharts.length === 3 && adminCharts.every((c) => c.points > 0), "the administrator's interface view is empty");
    await p3.screenshot({ path: path.join(shots, "admin-interface.png"), fullPage: true });
    check(adminErrors.length === 0, `the page logged errors for the administrator: ${adminErrors.join("; ")}`);
    await admin.close();

    // A wrong secret is named, not a blank page.
    const bad = await browser.newContext();
    const p4 = await bad.newPage();
    await p4.goto(base + "/");
    await p4.fill('#account-form input[name="appid"]', appid);
    await p4.fill('#account-form input[name="secret"]', "not-the-secret");
    await p4.click('#account-form button[type="submit"]');
    await p4.waitForFunction(() => document.querySelector("#signin-error").textContent !== "", null, { timeout: 10000 });
    const message = await p4.textContent("#signin-error");
    check(/40001|40125|invalid/.test(message), `a wrong secret says: ${message}`);
    await bad.close();

    // The Mirror view of `serve --mirror` (administrator): each account's state — the one whose
    // secret was refused named, with the advice — the runs, and Run now.
    const mirrored = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p6 = await mirrored.newPage();
    const mirrorErrors = [];
    watch(p6, mirrorErrors);
    await p6.goto(mirrorBase + "/");
    await p6.fill('#admin-form input[name="token"]', adminToken);
    await p6.click('#admin-form button[type="submit"]');
    await waitReady(p6, "followers");
    check(await p6.isVisible("#mirror-tab"), "the administrator of serve --mirror has no Mirror tab");
    // Until the first run has ended (it starts with the server).
    const accountStates = async () =>
      p6.$$eval('table[data-table="accounts"] tbody tr', (rows) =>
        rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent.trim())),
      );
    let states = [];
    for (let i = 0; i < 60; i++) {
      await p6.click('#tabs button[data-view="mirror"]');
      await waitReady(p6, "mirror");
      states = await accountStates();
      if (states.length === 2 && states.every((row) => row[1] !== "never")) break;
      await p6.waitForTimeout(1000);
    }
    check(states.length === 2, `the Mirror view lists ${states.length} accounts: ${JSON.stringify(states)}`);
    const demoRow = states.find((row) => row[0] === appid);
    const refusedRow = states.find((row) => row[0] === "wxbbbb000000000404");
    check(demoRow && demoRow[1] === "ok", `the demo account's state: ${JSON.stringify(demoRow)}`);
    check(
      refusedRow && refusedRow[1] === "credentials" && /check the appid wxbbbb000000000404/.test(refusedRow[4]),
      `the refused account's state: ${JSON.stringify(refusedRow)}`,
    );
    const facts = await p6.textContent(".facts");
    check(/Next attempt: 2026-06-16T08:30:00\+08:00/.test(facts), `the next attempt: ${facts}`);
    const runsBefore = await p6.$$eval('table[data-table="runs"] tbody tr', (rows) => rows.length);
    await p6.click('button[data-run=""]');
    await p6.waitForFunction(() => window.__dc.lastRun !== undefined, null, { timeout: 15000 });
    const lastRun = await p6.evaluate(() => window.__dc.lastRun);
    check(lastRun.status === 202, `Run now answered ${JSON.stringify(lastRun)}`);
    await p6.waitForFunction(
      (n) => document.querySelectorAll('table[data-table="runs"] tbody tr').length === n + 1,
      runsBefore,
      { timeout: 30000 },
    );
    await p6.screenshot({ path: path.join(shots, "mirror.png"), fullPage: true });
    check(mirrorErrors.length === 0, `the Mirror view logged errors: ${mirrorErrors.join("; ")}`);
    report.mirrorAccounts = states.length;
    await mirrored.close();

    // The API reference: reached from the dashboard's link, it lists every operation of
    // /openapi.json — under the page's Content-Security-Policy, with nothing fetched elsewhere.
    const ref = await browser.newContext();
    const p5 = await ref.newPage();
    const refErrors = [];
    watch(p5, refErrors);
    const outside = [];
    p5.on("request", (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith("data:")) outside.push(r.url());
    });
    await p5.goto(base + "/");
    await p5.click("#api-docs");
    await p5.waitForURL(base + "/docs");
    const described = await (await fetch(base + "/openapi.json")).json();
    const operationIds = Object.values(described.paths).flatMap((item) =>
      Object.values(item).map((op) => op.operationId),
    );
    check(operationIds.length > 60, `the description lists only ${operationIds.length} operations`);
    await p5.waitForFunction(
      (n) => document.querySelectorAll(".opblock").length === n,
      operationIds.length,
      { timeout: 30000 },
    );
    const shownIds = await p5.$$eval(".opblock .opblock-summary-operation-id", (els) =>
      els.map((e) => e.textContent.trim()),
    );
    const missing = operationIds.filter((id) => !shownIds.includes(id));
    check(missing.length === 0, `the reference page does not list ${missing.join(", ")}`);
    // One operation opened: its errcodes are there to read.
    await p5.click("#operations-Users-getusersummary .opblock-summary");
    await p5.waitForSelector("#operations-Users-getusersummary .responses-wrapper", { timeout: 10000 });
    await p5.screenshot({ path: path.join(shots, "docs.png"), fullPage: false });
    check(refErrors.length === 0, `the reference page logged errors: ${refErrors.join("; ")}`);
    check(outside.length === 0, `the reference page fetched from elsewhere: ${outside.join(", ")}`);
    report.referenceOperations = shownIds.length;
    await ref.close();

    console.log("dashboard: " + JSON.stringify(report));
    console.log(`dashboard: first view interactive ${report.firstViewMs} ms after signing in (page loaded in ${report.pageLoadMs} ms); screenshots in ${shots}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error("dashboard test FAILED: " + e.message);
  process.exit(1);
});
