#!/usr/bin/env bash
# The test command: starts a private RabbitMQ and MongoDB-wire server, runs every test in debug, then the core's
# tests again in release (the optimiser changes object lifetimes around C calls: librabbitmq, libmongoc, process
# spawning), and stops the services whatever happens.
#
# The release run builds the package without its HTTP side (CTA_PACKAGE_CORE_ONLY=1, see Package.swift), which has
# no C interop of its own and would double the build, and leaves out the suites that run coordinator processes
# (CoordinatorProcessSuites: end to end, resilience, API, CLI, live feed, VMs), which run in debug; it keeps the
# broker, database, agent and store tests. Its build uses a scratch path of its own and no manifest cache, so the
# two manifests never mix. It compiles at low priority while the debug tests run and takes the CPU they leave idle,
# so less of it is left for after them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"
export CTA_REQUIRE_SERVICES=1
release=(-c release -Xswiftc -enable-testing --manifest-cache none --scratch-path .build-core-release)

echo "== debug: build"
swift build --build-tests

echo "== release: building the core in the background ($CTA_SERVICES_DIR/build-release.log)"
# Both manifests write Package.resolved when they resolve: let the core's resolution finish, then put the full
# one back, so the debug run does not resolve again beside it.
cp Package.resolved "$CTA_SERVICES_DIR/Package.resolved.debug"
CTA_PACKAGE_CORE_ONLY=1 setsid nice -n 15 swift build --build-tests "${release[@]}" >"$CTA_SERVICES_DIR/build-release.log" 2>&1 &
release_build=$!
stop_release_build() { kill -- -"$release_build" 2>/dev/null || true; cta_stop_services; }
trap stop_release_build EXIT INT TERM
for _ in $(seq 600); do
    grep -q "Building for production" "$CTA_SERVICES_DIR/build-release.log" && break
    kill -0 "$release_build" 2>/dev/null || break
    sleep 0.2
done
cp "$CTA_SERVICES_DIR/Package.resolved.debug" Package.resolved

echo "== debug: all tests"
swift test --skip-build 2>&1 | tee "$CTA_SERVICES_DIR/test-debug.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "debug tests failed ($status)"; exit "$status"; }

echo "== release: waiting for the core's build"
build_status=0
wait "$release_build" || build_status=$?
tail -n 5 "$CTA_SERVICES_DIR/build-release.log"
[ "$build_status" -eq 0 ] || { cat "$CTA_SERVICES_DIR/build-release.log"; echo "release build failed ($build_status)"; exit "$build_status"; }

echo "== release: the core's tests (no HTTP side, no coordinator processes)"
CTA_PACKAGE_CORE_ONLY=1 swift test --skip-build "${release[@]}" --skip CoordinatorProcessSuites 2>&1 \
    | tee "$CTA_SERVICES_DIR/test-release.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "release tests failed ($status)"; exit "$status"; }
echo "all test runs passed"
