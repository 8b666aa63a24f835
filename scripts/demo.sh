#!/usr/bin/env bash
# The end-to-end run on this machine: one coordinator and two agents (demo-1 and demo-2 of the group demo-pool)
# against the private RabbitMQ and MongoDB-wire server that session.sh started. Runs one example scenario
# (default example-parallel), printing each test's result as it is stored and a summary, and exits with the
# run's code (0 all passed, 1 a test did not pass, 2 the execution did not finish). Every process it started is
# stopped by pid when it exits.
# Usage: scripts/demo.sh [SCENARIO]   (sourced services: run it through scripts/run.sh, or after session.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCENARIO="${1:-example-parallel}"
: "${CTA_AMQP_URL:?start the services first (scripts/run.sh does)}"

swift build -c release --product cta-coordinator
swift build -c release --product cta-agent
BIN="$(swift build -c release --show-bin-path)"
DEMO="$(mktemp -d /tmp/cta-demo.XXXXXX)"
DATABASE="cta-demo-$(date +%s)"
pids=()
demo_stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    echo "logs of this run: $DEMO"
}
trap demo_stop EXIT

"$BIN/cta-coordinator" serve --amqp-url "$CTA_AMQP_URL" --mongo-uri "$CTA_MONGO_URI" --database "$DATABASE" \
    --instance demo-coordinator --api-port 0 >"$DEMO/coordinator.log" 2>&1 &
pids+=($!)
for agent in demo-1 demo-2; do
    CTA_AGENT_BROKER_URL="$CTA_AMQP_URL" CTA_AGENT_WORK_DIR="$DEMO/$agent/work" \
        CTA_AGENT_STATE_DIR="$DEMO/$agent/state" \
        "$BIN/cta-agent" --config "examples/agents/$agent.yaml" >"$DEMO/$agent.log" 2>&1 &
    pids+=($!)
done
echo "coordinator and agents demo-1, demo-2 started (database $DATABASE, logs in $DEMO)"
"$BIN/cta-coordinator" run "$SCENARIO" --definitions examples --mongo-uri "$CTA_MONGO_URI" \
    --database "$DATABASE" --requested-by demo --log-level warning --wait-for demo-1 --wait-for demo-2
