#!/usr/bin/env bash
# The main job, as far as the product goes today: starts a private RabbitMQ and MongoDB-wire server, builds
# cta-bench and cta-agent in release mode and measures CTA's broker and store clients against the raw C
# libraries, a real agent against raw publishing, and an in-process coordinator's result store rate against raw
# libmongoc and its trigger-to-running latency, in the same run (one JSON line per figure), then stops the services.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

swift build -c release --product cta-bench
swift build -c release --product cta-agent
BENCH="$(swift build -c release --show-bin-path)/cta-bench"
"$BENCH" broker
"$BENCH" store
"$BENCH" agent
"$BENCH" consumer --url "$CTA_AMQP_BENCH_URL"
