// The package from CommonJS too, and `npx datacube`.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const { startDatacube, binaryPath } = require("wechat-datacube");

test("require() gives the helper and the binary", async () => {
  const version = execFileSync(binaryPath(), ["--version"], { encoding: "utf8" });
  assert.match(version, /^datacube \d+\.\d+\.\d+/);
  const viaNpx = execFileSync("npx", ["--no-install", "datacube", "--version"], { encoding: "utf8" });
  assert.equal(viaNpx, version);
  const dc = await startDatacube();
  try {
    await dc.addAccount("wx00000000000000c1", "0123456789abcdef0123456789abcdef");
    const token = await dc.token("wx00000000000000c1", "0123456789abcdef0123456789abcdef");
    assert.match(token, /^\d+_/);
  } finally {
    await dc.stop();
  }
});
