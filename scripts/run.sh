#!/usr/bin/env bash
# The main job, as far as the product goes today: installs what is missing, starts a private RabbitMQ and
# MongoDB-wire server, builds cta-bench in release mode and measures CTA's broker and store clients against
# the raw C libraries in the same run (one JSON line per figure), then stops the services by pid.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
export CTA_SERVICES_DIR="${CTA_SERVICES_DIR:-$(mktemp -d /tmp/cta-services.XXXXXX)}"
cleanup() { bash scripts/services.sh stop || true; }
trap cleanup EXIT INT TERM
bash scripts/services.sh start
# shellcheck disable=SC1091
source "$CTA_SERVICES_DIR/env"

swift build -c release --product cta-bench
BENCH="$(swift build -c release --show-bin-path)/cta-bench"
"$BENCH" broker "$@"
"$BENCH" store
