// A client generated from docs/openapi.json — types by openapi-typescript, calls by
// openapi-fetch — against a demo server: a token, then the last ready week of every one of
// the 21 endpoints (in chunks of each endpoint's span), each answer compared with the raw one
// fetched beside it. The typed reads below compile only if the description's shapes are the
// answers' (tsc --strict runs first).
//
//   node dist/check.js BASE_URL APPID SECRET LAST_READY_DAY
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.d.ts";

type Datacube = Extract<keyof paths, `/datacube/${string}`>;
type DatacubeError = components["schemas"]["DatacubeError"];

const [base, appid, secret, lastReady] = process.argv.slice(2) as [string, string, string, string];
const client = createClient<paths>({ baseUrl: base });

const issued = await client.GET("/cgi-bin/token", {
  params: { query: { grant_type: "client_credential", appid, secret } },
});
ok(issued.data && "access_token" in issued.data, JSON.stringify(issued.data));
const token: string = issued.data.access_token;
const lifetime: number = issued.data.expires_in;
strictEqual(lifetime, 7200);

const day = (d: Date) => d.toISOString().slice(0, 10);
const last = new Date(`${lastReady}T00:00:00Z`);
const plus = (d: Date, n: number) => new Date(d.getTime() + n * 86_400_000);

async function raw(path: Datacube, begin: string, end: string): Promise<unknown> {
  const response = await fetch(`${base}${path}?access_token=${token}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ begin_date: begin, end_date: end }),
  });
  return response.json();
}

const spec = (await (await fetch(`${base}/openapi.json`)).json()) as {
  paths: Record<string, { post?: { description?: string } }>;
};
const endpoints = Object.keys(spec.paths).filter((p): p is Datacube => p.startsWith("/datacube/"));
strictEqual(endpoints.length, 21);
let rows = 0;
for (const path of endpoints) {
  const text = spec.paths[path]?.post?.description ?? "";
  const span = text.includes("at most one day") ? 1 : Number(text.split("Span: at most ")[1]?.split(" days")[0]);
  ok(span >= 1, `${path}: no span in its description`);
  for (let begin = plus(last, -6); begin <= last; begin = plus(begin, span)) {
    const end = plus(begin, span - 1) > last ? last : plus(begin, span - 1);
    // Every datacube operation takes the same request: one path stands for the 21 here.
    const { data, error, response } = await client.POST(path as "/datacube/getusersummary", {
      params: { query: { access_token: token } },
      body: { begin_date: day(begin), end_date: day(end) },
    });
    strictEqual(response.status, 200);
    strictEqual(error, undefined);
    ok(data && "list" in data, `${path}: ${JSON.stringify(data)}`);
    deepStrictEqual(data, await raw(path, day(begin), day(end)));
    rows += data.list.length;
  }
}
ok(rows > 500, `only ${rows} rows`);

// Typed reads: each compiles only against the shapes the description gives.
const week = { begin_date: day(plus(last, -6)), end_date: day(last) };
const summary = await client.POST("/datacube/getusersummary", {
  params: { query: { access_token: token } },
  body: week,
});
ok(summary.data && "list" in summary.data);
const gained: number = summary.data.list.reduce((n, row) => n + row.new_user - row.cancel_user, 0);
ok(Number.isInteger(gained));
const published = await client.POST("/datacube/getarticletotaldetail", {
  params: { query: { access_token: token } },
  body: { begin_date: day(plus(last, -2)), end_date: day(plus(last, -2)) },
});
ok(published.data && "list" in published.data);
const delayed: boolean = published.data.is_delay;
strictEqual(delayed, true);
for (const item of published.data.list) {
  const snapshots = Array.isArray(item.detail_list) ? item.detail_list : [item.detail_list];
  for (const s of snapshots) {
    const read: number = s.read_user;
    ok(read >= 0 && /^\d{4}-\d{2}-\d{2}$/.test(s.stat_date));
  }
}
// An error answer is one of the codes the description lists for the operation.
const refused = await client.POST("/datacube/getusercumulate", {
  params: { query: { access_token: "not-a-token" } },
  body: week,
});
ok(refused.data && "errcode" in refused.data);
const code: DatacubeError["errcode"] = refused.data.errcode;
strictEqual(code, 40001);

console.log(`typescript client: token, 21 endpoints, ${rows} rows typed and equal to the raw answers`);
