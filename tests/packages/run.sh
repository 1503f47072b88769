#!/usr/bin/env bash
# The packages as users install them: the wheel and the npm tarballs scripts/package put in
# target/dist, installed offline into a fresh virtual environment and a fresh node project, and
# the example suites of docs/testing.md run with them — examples/pytest (wechatpy 1.8.18 from
# PyPI) and examples/node (co-wechat-api from the npm registry).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dist=$root/target/dist
ls "$dist"/wechat_datacube-*.whl "$dist"/wechat-datacube-*.tgz >/dev/null 2>&1 \
  || { echo "no packages in $dist: run scripts/package first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
quiet=(--quiet --disable-pip-version-check)

echo "== the Python package, in a fresh virtual environment"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install "${quiet[@]}" --no-index --find-links "$dist" wechat-datacube
"$work/venv/bin/pip" install "${quiet[@]}" -r "$root/examples/pytest/requirements.txt"
"$work/venv/bin/datacube" --version
(cd "$root/examples/pytest" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider)

echo "== the npm packages, in a fresh node project"
cp -r "$root/examples/node" "$work/node"
cd "$work/node"
npm install --no-audit --no-fund --loglevel=error
npm install --offline --no-audit --no-fund --loglevel=error "$dist"/wechat-datacube-*.tgz
npx --no-install datacube --version
npm test
