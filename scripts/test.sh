#!/usr/bin/env bash
# The test command: starts a private RabbitMQ and MongoDB-wire server, runs every test in debug, then every test
# again in release (the optimiser changes object lifetimes around C calls), and stops the services whatever
# happens.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"
export CTA_REQUIRE_SERVICES=1

echo "== debug: all tests"
swift test 2>&1 | tee "$CTA_SERVICES_DIR/test-debug.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "debug tests failed ($status)"; exit "$status"; }

echo "== release: all tests"
swift test -c release -Xswiftc -enable-testing 2>&1 | tee "$CTA_SERVICES_DIR/test-release.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "release tests failed ($status)"; exit "$status"; }
echo "all test runs passed"
