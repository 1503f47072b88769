#!/usr/bin/env bash
# datacube's alerting rules (deploy/prometheus/datacube-rules.yml) checked and unit-tested with
# promtool (Debian's prometheus package; scripts/test installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
promtool=${PROMTOOL:-promtool}
command -v "$promtool" >/dev/null || { echo "promtool not found (apt-get install prometheus)" >&2; exit 1; }
cd "$here"
"$promtool" check rules ../../deploy/prometheus/datacube-rules.yml
"$promtool" test rules datacube-rules.test.yml
