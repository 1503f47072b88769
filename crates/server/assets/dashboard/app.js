// datacube's dashboard: signs in, reads the datacube API in chunks of each endpoint's span,
// and draws each view with ECharts (embedded, no network). No build step: plain ES2020.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  meta: null,
  auth: null, // {kind: "account", appid, secret?, token, expires} | {kind: "admin", token, appid}
  view: "followers",
  from: null,
  to: null,
  charts: [], // {id, chart}
  cache: new Map(), // "appid name from to" -> rows
  generation: 0, // bumps on every redraw, so a slow fetch never draws over a newer view
};
// For tests and the curious: what is drawn, and when the first view was.
window.__dc = { charts: () => state.charts, ready: false, firstView: null, errors: [], csv: (list) => csv(list) };

const MSG_TYPES = { 1: "text", 2: "image", 3: "voice", 4: "video", 6: "link (3rd-party app)" };
const INTERVALS = { 0: "0", 1: "1–5", 2: "6–10", 3: "over 10" };
const SOURCES = {
  0: "other", 1: "search", 17: "business card", 30: "QR code", 35: "number search",
  39: "account search", 43: "article menu", 51: "after payment", 57: "name in article",
  75: "article ad", 78: "Moments ad", 100: "WeChat ads", 149: "mini program", 161: "reposts",
  176: "album page", 200: "Channels", 201: "live",
};

// ---- dates (YYYY-MM-DD strings, China dates as the API gives them) ----
function addDays(day, n) {
  const t = new Date(day + "T00:00:00Z");
  t.setUTCDate(t.getUTCDate() + n);
  return t.toISOString().slice(0, 10);
}
function daysFrom(a, b) {
  return Math.round((Date.parse(b + "T00:00:00Z") - Date.parse(a + "T00:00:00Z")) / 86400000);
}
function dayList(from, to) {
  const out = [];
  for (let d = from; d <= to; d = addDays(d, 1)) out.push(d);
  return out;
}

// ---- the API ----
class ApiError extends Error {}

function span(name) {
  const e = state.meta.endpoints.find((x) => x.name === name);
  return e ? e.span : 1;
}

async function accountToken(force) {
  const a = state.auth;
  if (!force && a.token && Date.now() < a.expires) return a.token;
  if (!a.secret) throw new ApiError("your session has ended: sign in again");
  const r = await fetch("/cgi-bin/stable_token", {
    method: "POST",
    body: JSON.stringify({ grant_type: "client_credential", appid: a.appid, secret: a.secret }),
  });
  const j = await r.json();
  if (!j.access_token) throw new ApiError(`sign-in refused: ${j.errcode} ${j.errmsg}`);
  a.token = j.access_token;
  a.expires = Date.now() + (j.expires_in - 60) * 1000;
  saveSession();
  return a.token;
}

async function call(name, begin, end) {
  const body = JSON.stringify({ begin_date: begin, end_date: end });
  const a = state.auth;
  for (let attempt = 0; attempt < 2; attempt++) {
    let r;
    if (a.kind === "admin") {
      r = await fetch(`/admin/datacube/${name}?appid=${encodeURIComponent(a.appid)}`, {
        method: "POST",
        headers: { Authorization: "Bearer " + a.token },
        body,
      });
      if (r.status === 401) throw new ApiError("the admin token was refused: sign in again");
    } else {
      const token = await accountToken(attempt > 0);
      r = await fetch(`/datacube/${name}?access_token=${encodeURIComponent(token)}`, { method: "POST", body });
    }
    const j = await r.json();
    if (Array.isArray(j.list)) return j.list;
    // A token replaced or expired meanwhile: once more with a new one.
    if (attempt === 0 && a.kind === "account" && [40001, 42001, 40014].includes(j.errcode)) continue;
    throw new ApiError(`${name} ${begin}…${end}: ${j.errcode ?? r.status} ${j.errmsg ?? j.error ?? ""}`);
  }
  throw new ApiError(`${name}: no answer`);
}

// Rows of `name` over [from, to], fetched in chunks of the endpoint's span, 6 at a time.
async function rows(name, from, to) {
  const key = `${state.auth.appid} ${name} ${from} ${to}`;
  if (state.cache.has(key)) return state.cache.get(key);
  const chunks = [];
  for (let b = from; b <= to; ) {
    let e = addDays(b, span(name) - 1);
    if (e > to) e = to;
    chunks.push([b, e]);
    b = addDays(e, 1);
  }
  const results = new Array(chunks.length);
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const i = next++;
      results[i] = await call(name, chunks[i][0], chunks[i][1]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(6, chunks.length) }, worker));
  const out = results.flat();
  state.cache.set(key, out);
  return out;
}

// ---- CSV ----
function csv(list) {
  const cols = [];
  for (const r of list) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const cell = (v) => {
    if (v === undefined || v === null) return "";
    let s = typeof v === "object" ? JSON.stringify(v) : String(v);
    // A text a spreadsheet would run as a formula (OWASP's CSV injection rule) starts with '.
    if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  return [cols.join(","), ...list.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}
function download(name, list) {
  const blob = new Blob(["\ufeff" + csv(list)], { type: "text/csv;charset=utf-8" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${state.auth.appid}-${name}-${state.from}-${state.to}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ---- panels and charts ----
function panel(title, csvName, list, wide) {
  const p = document.createElement("section");
  p.className = "panel" + (wide ? " wide" : "");
  const head = document.createElement("div");
  head.className = "panel-head";
  const h = document.createElement("h2");
  h.textContent = title;
  head.appendChild(h);
  if (csvName) {
    const b = document.createElement("button");
    b.textContent = "CSV";
    b.title = `Download ${csvName} rows as CSV`;
    b.dataset.csv = csvName;
    b.addEventListener("click", () => download(csvName, list));
    head.appendChild(b);
  }
  p.appendChild(head);
  $("view").appendChild(p);
  return p;
}

function chart(p, id, option, cls) {
  const el = document.createElement("div");
  el.className = cls || "chart";
  el.dataset.chart = id;
  p.appendChild(el);
  const c = echarts.init(el, null, { renderer: "canvas" });
  c.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" } }, option));
  state.charts.push({ id, chart: c });
  return c;
}

function empty(p, text) {
  const d = document.createElement("p");
  d.className = "empty";
  d.textContent = text;
  p.appendChild(d);
}

const grid = { left: 56, right: 24, top: 40, bottom: 56 };
const legend = { top: 0, type: "scroll" };
const zoom = [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }];

// Sums `value(row)` by (key(row), date) into one series per key, over `days`.
function seriesBy(list, days, key, value, extra) {
  const byKey = new Map();
  for (const r of list) {
    const k = key(r);
    if (!byKey.has(k)) byKey.set(k, new Map());
    const m = byKey.get(k);
    m.set(r.ref_date, (m.get(r.ref_date) || 0) + value(r));
  }
  return [...byKey.entries()]
    .sort((a, b) => (a[0] > b[0] ? 1 : -1))
    .map(([k, m]) => Object.assign({ name: k, type: "bar", data: days.map((d) => m.get(d) || 0) }, extra));
}

// A table of sends, newest first: `columns` are [header, class, (send, last snapshot) => text],
// then each send's cumulative readers over `days` slots as a sparkline (fixed slots, so that a
// send of yesterday's one point is not stretched over the cell).
function sendTable(p, idPrefix, sends, days, columns, snapshots, readers) {
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const [title, cls] of [...columns, ["Readers, day by day", ""]]) {
    const th = document.createElement("th");
    th.textContent = title;
    if (cls) th.className = cls.replace("title", "").trim();
    head.appendChild(th);
  }
  table.createTHead().appendChild(head);
  const tbody = document.createElement("tbody");
  table.appendChild(tbody);
  p.appendChild(table);
  const sorted = [...sends].sort((a, b) => (a.ref_date !== b.ref_date ? (a.ref_date < b.ref_date ? 1 : -1) : a.msgid < b.msgid ? -1 : 1));
  sorted.forEach((s, i) => {
    const snaps = snapshots(s);
    const last = snaps[snaps.length - 1] || {};
    const tr = document.createElement("tr");
    const td = (text, cls) => {
      const c = document.createElement("td");
      c.textContent = text;
      if (cls) c.className = cls;
      tr.appendChild(c);
      return c;
    };
    for (const [, cls, value] of columns) {
      const c = td(value(s, last), cls);
      if (cls === "title") c.title = c.textContent;
    }
    const cell = td("");
    tbody.appendChild(tr);
    chart(cell, `${idPrefix}-${i}`, {
      tooltip: { trigger: "axis" },
      grid: { left: 2, right: 2, top: 4, bottom: 4 },
      xAxis: { type: "category", show: false, data: [...Array(days).keys()].map((n) => "day " + (n + 1)) },
      yAxis: { type: "value", show: false },
      series: [{ name: "readers (cumulative)", type: "line", showSymbol: snaps.length < 2, symbolSize: 6, areaStyle: { opacity: 0.15 }, data: snaps.slice(0, days).map(readers) }],
    }, "spark");
  });
}

// ---- views ----
const views = {
  async followers(from, to) {
    const [cumulate, summary] = await Promise.all([rows("getusercumulate", from, to), rows("getusersummary", from, to)]);
    return () => {
      const days = dayList(from, to);
      let p = panel("Followers (cumulative)", "getusercumulate", cumulate, true);
      if (!cumulate.length) empty(p, "No follower statistics in this range.");
      else {
        const byDay = new Map(cumulate.map((r) => [r.ref_date, r.cumulate_user]));
        chart(p, "followers-cumulate", {
          grid, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value", scale: true },
          series: [{ name: "followers", type: "line", showSymbol: false, areaStyle: { opacity: 0.1 }, data: days.map((d) => byDay.get(d) ?? null) }],
        });
      }
      p = panel("New and cancelled, by channel", "getusersummary", summary, true);
      const active = summary.filter((r) => r.new_user || r.cancel_user);
      if (!active.length) empty(p, "No follows or unfollows in this range.");
      else {
        const name = (r) => SOURCES[r.user_source] || `source ${r.user_source}`;
        const added = seriesBy(active, days, (r) => "new: " + name(r), (r) => r.new_user, { stack: "new" });
        const gone = seriesBy(active, days, (r) => "cancelled: " + name(r), (r) => -r.cancel_user, { stack: "cancel" });
        chart(p, "followers-channels", {
          grid: Object.assign({}, grid, { top: 64 }), legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: [...added, ...gone].filter((s) => s.data.some((v) => v !== 0)),
        });
      }
    };
  },

  async messages(from, to) {
    const [daily, hourly, dist] = await Promise.all([
      rows("getupstreammsg", from, to),
      rows("getupstreammsghour", from, to),
      rows("getupstreammsgdist", from, to),
    ]);
    return () => {
      const days = dayList(from, to);
      let p = panel("Messages by type", "getupstreammsg", daily, true);
      if (!daily.length) empty(p, "No messages in this range.");
      else
        chart(p, "messages-types", {
          grid, legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: seriesBy(daily, days, (r) => MSG_TYPES[r.msg_type] || `type ${r.msg_type}`, (r) => r.msg_count, { stack: "all" }),
        });
      p = panel("Messages by hour of day", "getupstreammsghour", hourly);
      if (!hourly.length) empty(p, "No messages in this range.");
      else {
        const cells = new Map();
        for (const r of hourly) {
          const k = r.ref_date + " " + Math.floor(r.ref_hour / 100);
          cells.set(k, (cells.get(k) || 0) + r.msg_count);
        }
        const data = [];
        let max = 0;
        days.forEach((d, y) => {
          for (let h = 0; h < 24; h++) {
            const v = cells.get(d + " " + h) || 0;
            max = Math.max(max, v);
            data.push([h, y, v]);
          }
        });
        chart(p, "messages-heatmap", {
          tooltip: { position: "top", formatter: (x) => `${days[x.value[1]]} ${x.value[0]}:00 — ${x.value[2]} messages` },
          grid: { left: 84, right: 16, top: 8, bottom: 84 },
          xAxis: { type: "category", data: [...Array(24).keys()].map(String), splitArea: { show: true } },
          yAxis: { type: "category", data: days, inverse: true, axisLabel: { interval: Math.max(0, Math.ceil(days.length / 12) - 1) } },
          visualMap: { min: 0, max: Math.max(1, max), calculable: true, orient: "horizontal", left: "center", bottom: 0, itemHeight: 120 },
          series: [{ name: "messages", type: "heatmap", data }],
        });
      }
      p = panel("Users by messages sent a day", "getupstreammsgdist", dist);
      if (!dist.length) empty(p, "No messages in this range.");
      else
        chart(p, "messages-distribution", {
          grid, legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: seriesBy(dist, days, (r) => INTERVALS[r.count_interval] ?? r.count_interval, (r) => r.msg_user, { stack: "all" }),
        });
    };
  },

  async articles(from, to) {
    const [sends, reads] = await Promise.all([rows("getarticletotal", from, to), rows("getuserread", from, to)]);
    return () => {
      const days = dayList(from, to);
      let p = panel("Reads a day (all articles)", "getuserread", reads, true);
      if (!reads.length) empty(p, "No reads in this range.");
      else
        chart(p, "articles-reads", {
          grid, legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: [
            seriesBy(reads, days, () => "readers", (r) => r.int_page_read_user, { type: "line", showSymbol: false })[0],
            seriesBy(reads, days, () => "shares", (r) => r.share_count, { type: "line", showSymbol: false })[0],
          ],
        });
      p = panel("Sends, with each one's first 7 days of readers", "getarticletotal", sends, true);
      if (!sends.length) {
        empty(p, "No articles sent in this range.");
        return;
      }
      sendTable(p, "articles-send", sends, 7, [
        ["Sent", "", (s) => s.ref_date],
        ["Title", "title", (s) => s.title],
        ["Recipients", "num hide-narrow", (s, last) => String(last.target_user ?? "")],
        ["Readers", "num", (s, last) => String(last.int_page_read_user ?? 0)],
        ["Shares", "num hide-narrow", (s, last) => String(last.share_count ?? 0)],
      ], (s) => s.details || [], (d) => d.int_page_read_user);
    };
  },

  // `serve --mirror` (administrator only): each account's state — those that never synced
  // too — the next attempt, the runs, and a button that runs the mirror (or one account) now.
  async mirror() {
    const auth = { headers: { Authorization: "Bearer " + state.auth.token } };
    const get = async (path) => {
      const r = await fetch(path, auth);
      const j = await r.json();
      if (!r.ok) throw new ApiError(`${path}: ${j.error || r.status}`);
      return j;
    };
    const mirror = await get("/admin/sync/mirror");
    const runs = await get(`/admin/sync/runs?limit=20&mirror=${encodeURIComponent(mirror.mirror)}`);
    return () => {
      const status = (text, cls) => {
        const span = document.createElement("span");
        span.className = "badge " + (cls || text);
        span.textContent = text;
        return span;
      };
      const table = (p, headers, items, row) => {
        const t = document.createElement("table");
        const head = document.createElement("tr");
        for (const h of headers) {
          const th = document.createElement("th");
          th.textContent = h;
          head.appendChild(th);
        }
        t.createTHead().appendChild(head);
        const body = document.createElement("tbody");
        for (const item of items) {
          const tr = document.createElement("tr");
          for (const cell of row(item)) {
            const td = document.createElement("td");
            if (cell instanceof Node) td.appendChild(cell);
            else td.textContent = cell ?? "";
            tr.appendChild(td);
          }
          body.appendChild(tr);
        }
        t.appendChild(body);
        p.appendChild(t);
        return t;
      };
      const runNow = (appid) => {
        const b = document.createElement("button");
        b.textContent = appid ? "Run" : "Run now";
        b.dataset.run = appid || "";
        b.title = appid ? `Mirror ${appid} now` : "Read the configuration again and mirror every account now";
        b.addEventListener("click", async () => {
          b.disabled = true;
          const r = await fetch("/admin/sync/run", {
            method: "POST",
            headers: { Authorization: "Bearer " + state.auth.token, "Content-Type": "application/json" },
            body: JSON.stringify(appid ? { appid } : {}),
          });
          const j = await r.json();
          $("status").textContent = r.ok ? `Run #${j.id} started (${j.slot}, attempt ${j.attempt})` : `Not started: ${j.error}`;
          window.__dc.lastRun = { status: r.status, answer: j };
          setTimeout(() => { if (state.view === "mirror") draw(); }, 1500);
        });
        return b;
      };
      let p = panel(`Mirror ${mirror.mirror}`, null, [], true);
      p.dataset.mirror = mirror.mirror;
      const facts = document.createElement("p");
      facts.className = "facts";
      facts.textContent = `Every day at ${mirror.schedule} China time. Next attempt: ${mirror.next_attempt || "not planned"}.` +
        (mirror.running ? ` Run #${mirror.running} is under way.` : "");
      p.appendChild(facts);
      p.querySelector(".panel-head").appendChild(runNow(null));
      table(p, ["Account", "Last outcome", "Last run", "Last success", "Last error", ""], mirror.accounts, (a) => [
        a.appid,
        status(a.outcome),
        a.last_run || "never",
        a.last_success || "never",
        a.error || "",
        runNow(a.appid),
      ]).dataset.table = "accounts";
      p = panel("Runs, newest first", null, [], true);
      if (!runs.runs.length) empty(p, "No runs yet.");
      else
        table(p, ["#", "Day", "Attempt", "Started", "Outcome", "Rows new or changed", "Failures"], runs.runs, (r) => [
          String(r.id),
          r.slot || "(sync)",
          String(r.attempt),
          r.started,
          status(r.outcome || "running"),
          r.report ? String(r.report.rows_changed ?? r.report.rows_stored ?? "") : "",
          r.report ? (r.report.accounts || []).filter((a) => a.outcome !== "ok").map((a) => `${a.appid}: ${a.outcome}`).join("; ") : "",
        ]).dataset.table = "runs";
    };
  },

  // The 2025 "published content" endpoints (WeChat's only article statistics since it took the
  // old ones offline in 2026): data from 2025-11-01 on.
  async published(from, to) {
    const [biz, sends] = await Promise.all([rows("getbizsummary", from, to), rows("getarticletotaldetail", from, to)]);
    return () => {
      const days = dayList(from, to);
      const byDay = new Map(biz.map((r) => [r.ref_date, r.detail]));
      const pick = (f) => days.map((d) => (byDay.has(d) ? f(byDay.get(d)) : 0));
      const note = from < "2025-11-01" ? " (WeChat keeps these from 2025-11-01 on)" : "";
      let p = panel("Published content a day" + note, "getbizsummary", biz, true);
      if (!biz.length) empty(p, "No published content statistics in this range.");
      else {
        const line = (name, f) => ({ name, type: "line", showSymbol: false, data: pick(f) });
        chart(p, "published-day", {
          grid: Object.assign({}, grid, { right: 56 }), legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: [{ type: "value", name: "users" }, { type: "value", name: "articles", minInterval: 1 }],
          series: [
            line("readers", (d) => d.read_user),
            line("sharers", (d) => d.share_user),
            line("在看 (heart)", (d) => d.zaikan_user),
            line("likes", (d) => d.like_user),
            line("comments", (d) => d.comment_count),
            line("favourites", (d) => d.collection_user ?? 0),
            { name: "articles published", type: "bar", yAxisIndex: 1, itemStyle: { opacity: 0.3 }, data: pick((d) => d.send_page_count ?? 0) },
          ],
        });
      }
      p = panel("Readers by scene", "getbizsummary", biz, true);
      const scenes = [];
      for (const r of biz) for (const s of r.detail.read_user_source) if (s.scene_desc !== "全部" && !scenes.includes(s.scene_desc)) scenes.push(s.scene_desc);
      if (!scenes.length) empty(p, "No readers in this range.");
      else
        chart(p, "published-scenes", {
          grid: Object.assign({}, grid, { top: 64 }), legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: scenes.map((scene) => ({
            name: scene, type: "bar", stack: "scenes",
            data: pick((d) => (d.read_user_source.find((s) => s.scene_desc === scene) || {}).user_count || 0),
          })),
        });
      p = panel("Published articles, with their readers over 30 days", "getarticletotaldetail", sends, true);
      if (!sends.length) {
        empty(p, "No articles published in this range.");
        return;
      }
      sendTable(p, "published-send", sends, 30, [
        ["Published", "", (s) => s.ref_date],
        ["Title", "title", (s) => s.title ?? s.msgid],
        ["Notified", "hide-narrow", (s) => (s.publish_type === 1 ? "no" : "yes")],
        ["Readers", "num", (s, last) => String(last.read_user ?? 0)],
        ["Finished", "num hide-narrow", (s, last) => (last.read_finish_rate === undefined ? "" : Math.round(100 * last.read_finish_rate) + " %")],
        ["Minutes", "num hide-narrow", (s, last) => (last.read_avg_activetime === undefined ? "" : last.read_avg_activetime.toFixed(1))],
      ], (s) => s.detail_list || [], (d) => d.read_user);
    };
  },

  async interface(from, to) {
    const [daily, hourly] = await Promise.all([rows("getinterfacesummary", from, to), rows("getinterfacesummaryhour", from, to)]);
    return () => {
      const days = dayList(from, to);
      const byDay = new Map(daily.map((r) => [r.ref_date, r]));
      const pick = (f) => days.map((d) => (byDay.has(d) ? f(byDay.get(d)) : null));
      let p = panel("Calls and failure rate, by day", "getinterfacesummary", daily);
      if (!daily.length) empty(p, "No pushed messages in this range.");
      else
        chart(p, "interface-calls", {
          grid: Object.assign({}, grid, { right: 56 }), legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: [{ type: "value", name: "calls" }, { type: "value", name: "failed %", min: 0 }],
          series: [
            { name: "calls", type: "bar", data: pick((r) => r.callback_count) },
            { name: "failed %", type: "line", yAxisIndex: 1, data: pick((r) => (r.callback_count ? +((100 * r.fail_count) / r.callback_count).toFixed(2) : 0)) },
          ],
        });
      p = panel("Reply time, by day (ms)", "getinterfacesummary", daily);
      if (!daily.length) empty(p, "No pushed messages in this range.");
      else
        chart(p, "interface-time", {
          grid, legend, dataZoom: zoom,
          xAxis: { type: "category", data: days },
          yAxis: { type: "value" },
          series: [
            { name: "average", type: "line", data: pick((r) => (r.callback_count ? Math.round(r.total_time_cost / r.callback_count) : 0)) },
            { name: "max", type: "line", data: pick((r) => r.max_time_cost) },
          ],
        });
      p = panel("By hour: calls, failures, average and max reply time", "getinterfacesummaryhour", hourly, true);
      if (!hourly.length) empty(p, "No pushed messages in this range.");
      else {
        const slots = [];
        for (const d of days) for (let h = 0; h < 24; h++) slots.push(`${d} ${String(h).padStart(2, "0")}:00`);
        const at = new Map(hourly.map((r) => [`${r.ref_date} ${String(Math.floor(r.ref_hour / 100)).padStart(2, "0")}:00`, r]));
        const get = (f) => slots.map((s) => (at.has(s) ? f(at.get(s)) : 0));
        chart(p, "interface-hours", {
          grid: Object.assign({}, grid, { right: 56 }), legend, dataZoom: zoom,
          xAxis: { type: "category", data: slots },
          yAxis: [{ type: "value", name: "calls" }, { type: "value", name: "ms" }],
          series: [
            { name: "calls", type: "bar", data: get((r) => r.callback_count) },
            { name: "failures", type: "bar", data: get((r) => r.fail_count) },
            { name: "average ms", type: "line", yAxisIndex: 1, showSymbol: false, data: get((r) => (r.callback_count ? Math.round(r.total_time_cost / r.callback_count) : 0)) },
            { name: "max ms", type: "line", yAxisIndex: 1, showSymbol: false, data: get((r) => r.max_time_cost) },
          ],
        });
      }
    };
  },
};

// ---- drawing a view ----
function clearView() {
  for (const c of state.charts) c.chart.dispose();
  state.charts = [];
  $("view").replaceChildren();
}

async function draw() {
  const generation = ++state.generation;
  const { view, from, to } = state;
  window.__dc.ready = false;
  $("status").textContent = `Loading ${view}, ${from} to ${to}…`;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  try {
    const render = await views[view](from, to);
    if (generation !== state.generation) return;
    clearView();
    render();
    $("status").textContent = `${from} to ${to}`;
    window.__dc.ready = true;
    if (!window.__dc.firstView && window.__dc.signInAt !== undefined) {
      window.__dc.firstView = { view, ms: performance.now() - window.__dc.signInAt, sincePageStart: performance.now() };
    }
  } catch (e) {
    if (generation !== state.generation) return;
    clearView();
    $("status").textContent = "";
    const p = panel("Could not load " + view, null, [], true);
    const msg = document.createElement("p");
    msg.className = "error";
    msg.textContent = e.message;
    p.appendChild(msg);
    window.__dc.errors.push(e.message);
    if (!(e instanceof ApiError)) throw e;
  }
}

function setRange(from, to) {
  const last = state.meta.last_ready;
  if (to > last) to = last;
  if (from > to) from = to;
  state.from = from;
  state.to = to;
  $("from").value = from;
  $("to").value = to;
  $("from").max = $("to").max = last;
}

// ---- session ----
function saveSession() {
  const a = state.auth;
  if (!a) return sessionStorage.removeItem("datacube");
  // The secret is never stored; a reload keeps the token until it expires.
  const { secret, ...kept } = a;
  sessionStorage.setItem("datacube", JSON.stringify(kept));
}

async function enterBoard() {
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  const a = state.auth;
  if (a.kind === "admin") {
    const r = await fetch("/admin/accounts", { headers: { Authorization: "Bearer " + a.token } });
    if (!r.ok) throw new ApiError("the admin token was refused");
    const accounts = await r.json();
    const list = Array.isArray(accounts) ? accounts : accounts.accounts || [];
    const select = $("account");
    select.replaceChildren(...list.map((x) => new Option(x.appid + (x.verified === false ? " (unverified)" : ""), x.appid)));
    if (!list.length) throw new ApiError("there are no accounts yet");
    if (!a.appid || !list.some((x) => x.appid === a.appid)) a.appid = list[0].appid;
    select.value = a.appid;
    $("account-pick").hidden = false;
    $("who").textContent = "administrator";
    $("mirror-tab").hidden = !state.meta.mirror;
  } else {
    $("account-pick").hidden = true;
    $("mirror-tab").hidden = true;
    if (state.view === "mirror") state.view = "followers";
    $("who").textContent = a.appid;
  }
  saveSession();
  await draw();
}

async function signIn(auth) {
  $("signin-error").textContent = "";
  window.__dc.signInAt = performance.now();
  state.auth = auth;
  state.cache.clear();
  try {
    if (auth.kind === "account") await accountToken(true);
    await enterBoard();
  } catch (e) {
    state.auth = null;
    saveSession();
    $("board").hidden = true;
    $("signin").hidden = false;
    $("signout").hidden = true;
    $("signin-error").textContent = e.message;
  }
}

async function start() {
  state.meta = await (await fetch("/dashboard/meta.json")).json();
  $("admin-card").hidden = !state.meta.admin;
  // The old article endpoints retired on this server (47009): their view goes, Published stays.
  const retired = state.meta.endpoints.some((e) => e.offline && e.name === "getarticletotal");
  document.querySelector('#tabs button[data-view="articles"]').hidden = retired;
  setRange(addDays(state.meta.last_ready, -29), state.meta.last_ready);
  $("account-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    signIn({ kind: "account", appid: f.get("appid").trim(), secret: f.get("secret") });
  });
  $("admin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn({ kind: "admin", token: new FormData(ev.target).get("token") });
  });
  $("signout").addEventListener("click", () => {
    state.auth = null;
    saveSession();
    clearView();
    location.reload();
  });
  $("tabs").addEventListener("click", (ev) => {
    const v = ev.target.dataset && ev.target.dataset.view;
    if (v && v !== state.view) {
      state.view = v;
      draw();
    }
  });
  document.querySelector(".presets").addEventListener("click", (ev) => {
    const n = +(ev.target.dataset && ev.target.dataset.days);
    if (n) {
      setRange(addDays(state.meta.last_ready, -(n - 1)), state.meta.last_ready);
      draw();
    }
  });
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => {
      if ($("from").value && $("to").value) {
        setRange($("from").value, $("to").value);
        draw();
      }
    });
  }
  $("account").addEventListener("change", (ev) => {
    state.auth.appid = ev.target.value;
    saveSession();
    draw();
  });
  window.addEventListener("resize", () => state.charts.forEach((c) => c.chart.resize()));
  const saved = sessionStorage.getItem("datacube");
  if (saved) {
    const a = JSON.parse(saved);
    if (a.kind === "admin" || (a.token && Date.now() < a.expires)) {
      state.auth = a;
      enterBoard().catch((e) => {
        state.auth = null;
        saveSession();
        location.reload();
      });
    }
  }
}

start();
