#!/usr/bin/env bash
# The test command: installs what is missing, starts a private RabbitMQ and MongoDB-wire server,
# runs every test in debug, then the integration tests again in release (the optimiser changes object
# lifetimes around C calls), and stops the services by pid whatever happens.
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
export CTA_REQUIRE_SERVICES=1

echo "== debug: all tests"
swift test --parallel --num-workers 2 2>&1 | tee "$CTA_SERVICES_DIR/test-debug.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "debug tests failed ($status)"; exit "$status"; }

echo "== release: integration tests"
swift test -c release -Xswiftc -enable-testing --filter CTAIntegrationTests 2>&1 | tee "$CTA_SERVICES_DIR/test-release.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "release integration tests failed ($status)"; exit "$status"; }
echo "all test runs passed"
