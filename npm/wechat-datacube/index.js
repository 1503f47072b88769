// wechat-datacube: the datacube binary of this platform, and startDatacube(), a server of a
// test's own with the calls a test makes to it. Types in index.d.ts; ESM in index.mjs.
"use strict";

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const path = require("node:path");
const readline = require("node:readline");

const SERVING = "datacube is serving the WeChat API on ";

/** The path of the datacube binary: $DATACUBE_BINARY, or this platform's package's. */
function binaryPath() {
  if (process.env.DATACUBE_BINARY) {
    return process.env.DATACUBE_BINARY;
  }
  const platform = `${process.platform}-${process.arch}`;
  const exe = process.platform === "win32" ? "datacube.exe" : "datacube";
  const pkg = `@wechat-datacube/${platform}`;
  try {
    return require.resolve(`${pkg}/bin/${exe}`);
  } catch {
    throw new Error(
      `wechat-datacube: no binary for ${platform}: the optional dependency ${pkg} is not ` +
        "installed (reinstall without --no-optional, or set DATACUBE_BINARY)"
    );
  }
}

/**
 * Starts `datacube serve` on a free port of 127.0.0.1 with an in-memory database and an admin
 * token of its own, and resolves once it is ready.
 * @param {{clock?: string, database?: string, args?: string[], binary?: string,
 *   startupTimeout?: number}} [options]
 */
async function startDatacube(options = {}) {
  const binary = options.binary || binaryPath();
  const adminToken = crypto.randomBytes(16).toString("hex");
  const args = ["serve", "--listen", "127.0.0.1:0", "--no-request-log", ...(options.args || [])];
  if (options.clock) {
    args.push("--clock", options.clock);
  }
  const env = {
    ...process.env,
    DATACUBE_DATABASE: options.database || "sqlite::memory:",
    DATACUBE_ADMIN_TOKEN: adminToken,
    DATACUBE_LOG: process.env.DATACUBE_LOG || "warn",
  };
  delete env.DATACUBE_LISTEN;
  const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const timeout = options.startupTimeout ?? 30000;
  const url = await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`datacube serve did not start within ${timeout} ms: ${stderr}`));
    }, timeout);
    lines.on("line", (line) => {
      if (line.startsWith(SERVING)) {
        clearTimeout(timer);
        resolve(line.slice(SERVING.length).split(/\s/)[0].replace(/\/$/, ""));
      }
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${binary}: ${e.message}`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`datacube serve exited (${code}): ${stderr || "it printed nothing"}`));
    });
  });
  child.removeAllListeners("exit");
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      const ready = await fetch(`${url}/readyz`);
      if (ready.status === 200) {
        break;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`datacube serve was not ready within ${timeout} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  async function admin(method, route, body) {
    const init = { method, headers: { Authorization: `Bearer ${adminToken}` } };
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const answer = await fetch(url + route, init);
    const text = await answer.text();
    let json;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!answer.ok) {
      throw new Error(`${method} ${route}: HTTP ${answer.status}: ${(json && json.error) || text}`);
    }
    return json;
  }

  return {
    url,
    adminToken,
    process: child,
    async addAccount(appid, secret, { verified = true } = {}) {
      await admin("POST", "/admin/accounts", { appid, secret, verified });
    },
    async postEvents(events) {
      const body =
        typeof events === "string" ? events : events.map((e) => JSON.stringify(e)).join("\n");
      const report = await admin("POST", "/admin/events", body);
      if (report.rejected_total > 0) {
        const first = report.rejected[0];
        throw new Error(
          `${report.rejected_total} event lines rejected; line ${first.line}: ${first.reason}`
        );
      }
      return report;
    },
    async setClock(now) {
      const iso = now instanceof Date ? now.toISOString() : now;
      return (await admin("POST", "/admin/clock", { now: iso })).now;
    },
    async faults(rules = "", { seed, add = false } = {}) {
      if (add) {
        return admin("POST", "/admin/faults", { rules });
      }
      return admin("PUT", "/admin/faults", seed === undefined ? { rules } : { rules, seed });
    },
    async faultsInForce() {
      return admin("GET", "/admin/faults");
    },
    async reset() {
      await admin("POST", "/admin/reset", { accounts: true, clock: true, faults: true });
    },
    async token(appid, secret) {
      const q = new URLSearchParams({ grant_type: "client_credential", appid, secret });
      const got = await (await fetch(`${url}/cgi-bin/token?${q}`)).json();
      if (!got.access_token) {
        throw new Error(`/cgi-bin/token answered ${JSON.stringify(got)}`);
      }
      return got.access_token;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) {
        return;
      }
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const late = setTimeout(() => child.kill("SIGKILL"), 15000);
      await exited;
      clearTimeout(late);
    },
  };
}

module.exports = { startDatacube, binaryPath, packageDir: path.dirname(__filename) };
