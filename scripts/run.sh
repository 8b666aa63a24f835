#!/usr/bin/env bash
# The main job: starts a private RabbitMQ and MongoDB-wire server, then
#   1. runs the example scenario end to end on this machine: one coordinator, two agents (scripts/demo.sh),
#      printing each test's result as it arrives and a summary;
#   2. measures CTA against the raw C libraries, a real agent against raw publishing, the coordinator's
#      result store rate against raw libmongoc and its trigger-to-running latency, and the API's live-feed
#      fan-out and REST reads against raw change streams and reads, and how many agents one gateway holds and
#      its result rate next to direct AMQP, in the same run (one JSON line per figure: cta-bench broker, store,
#      agent, consumer, api, gateway);
# then stops every process it started.
# Usage: scripts/run.sh [SCENARIO]   (default example-parallel; see examples/scenarios.yaml)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

bash scripts/demo.sh "${1:-example-parallel}"

swift build -c release --product cta-bench
swift build -c release --product cta-gateway
BENCH="$(swift build -c release --show-bin-path)/cta-bench"
"$BENCH" broker
"$BENCH" store
"$BENCH" agent
"$BENCH" consumer --url "$CTA_AMQP_BENCH_URL"
"$BENCH" api
"$BENCH" gateway --url "$CTA_AMQP_BENCH_URL"
