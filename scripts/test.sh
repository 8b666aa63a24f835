#!/usr/bin/env bash
# The test command: starts a private RabbitMQ and MongoDB-wire server, runs every test in debug, then the core's
# tests again in release (the optimiser changes object lifetimes around C calls: librabbitmq, libmongoc, process
# spawning), and stops the services whatever happens.
#
# The release run builds the package without its HTTP side (CTA_PACKAGE_CORE_ONLY=1, see Package.swift), which has
# no C interop of its own and would double the build, and leaves out the suites that run coordinator processes
# (CoordinatorProcessSuites: end to end, resilience, API, CLI, live feed, VMs), which run in debug; it keeps the
# broker, database, agent and store tests. Its build uses a scratch path of its own and no manifest cache, so the
# two manifests never mix.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"
export CTA_REQUIRE_SERVICES=1

echo "== debug: all tests"
swift test 2>&1 | tee "$CTA_SERVICES_DIR/test-debug.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "debug tests failed ($status)"; exit "$status"; }

echo "== release: the core's tests (no HTTP side, no coordinator processes)"
CTA_PACKAGE_CORE_ONLY=1 swift test -c release -Xswiftc -enable-testing --manifest-cache none \
    --scratch-path .build-core-release --skip CoordinatorProcessSuites 2>&1 | tee "$CTA_SERVICES_DIR/test-release.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "release tests failed ($status)"; exit "$status"; }
echo "all test runs passed"
