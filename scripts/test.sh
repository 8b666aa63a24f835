#!/usr/bin/env bash
# The test command: starts a private RabbitMQ and MongoDB-wire server, runs every test in debug, then the tests
# of the core again in release (the optimiser changes object lifetimes around C calls: librabbitmq, libmongoc,
# process spawning), and stops the services whatever happens.
#
# The release run builds the package without its HTTP side (CTA_PACKAGE_CORE_ONLY=1, see Package.swift), which has
# no C interop of its own and would double the build. That build runs while the debug tests run (they mostly wait
# on processes and services), from a copy of the tree so that its package resolution (fewer dependencies) never
# touches the debug build's. The release run skips the cron test, which waits for minute boundaries; it runs in
# debug.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"
export CTA_REQUIRE_SERVICES=1
CORE="$ROOT/.build-core-release"

echo "== debug: build"
swift build --build-tests 2>&1 | tee "$CTA_SERVICES_DIR/build-debug.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "debug build failed ($status)"; exit "$status"; }

echo "== release: building the core in the background ($CTA_SERVICES_DIR/build-release.log)"
rm -rf "$CORE/src" && mkdir -p "$CORE/src"
tar -C "$ROOT" --exclude='./.build*' --exclude=./.venv --exclude=./.services --exclude=./.git -cf - . | tar -C "$CORE/src" -xf -
(
    cd "$CORE/src"
    CTA_PACKAGE_CORE_ONLY=1 swift build -c release -Xswiftc -enable-testing --build-tests --manifest-cache none \
        --scratch-path "$CORE/build" >"$CTA_SERVICES_DIR/build-release.log" 2>&1
) &
release_build=$!

echo "== debug: all tests"
set +e
swift test --skip-build 2>&1 | tee "$CTA_SERVICES_DIR/test-debug.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    kill "$release_build" 2>/dev/null || true
    wait "$release_build" 2>/dev/null || true
    echo "debug tests failed ($status)"
    exit "$status"
fi

echo "== release: waiting for the core's build"
if ! wait "$release_build"; then
    tail -50 "$CTA_SERVICES_DIR/build-release.log"
    echo "release build failed"
    exit 1
fi

echo "== release: the core's tests (no HTTP side)"
(
    cd "$CORE/src"
    CTA_PACKAGE_CORE_ONLY=1 swift test -c release -Xswiftc -enable-testing --manifest-cache none \
        --scratch-path "$CORE/build" --skip-build --skip cronFiresOnceAcrossCoordinators 2>&1 \
        | tee "$CTA_SERVICES_DIR/test-release.log"
    exit "${PIPESTATUS[0]}"
) || { status=$?; echo "release tests failed ($status)"; exit "$status"; }
echo "all test runs passed"
