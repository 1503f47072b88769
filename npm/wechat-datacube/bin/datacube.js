#!/usr/bin/env node
// `datacube`: runs the binary of this platform's package (as biome's and esbuild's launchers do).
"use strict";
const { spawnSync } = require("node:child_process");
const { binaryPath } = require("../index.js");

let binary;
try {
  binary = binaryPath();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
const result = spawnSync(binary, process.argv.slice(2), { stdio: "inherit" });
if (result.error) {
  console.error(`cannot run ${binary}: ${result.error.message}`);
  process.exit(1);
}
if (result.signal) {
  process.kill(process.pid, result.signal);
}
process.exit(result.status ?? 1);
