#!/usr/bin/env bash
# The main job, as far as the product goes today: starts a private RabbitMQ and MongoDB-wire server, builds
# cta-bench in release mode and measures CTA's broker and store clients against the raw C libraries in the
# same run (one JSON line per figure), then stops the services.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

swift build -c release --product cta-bench
BENCH="$(swift build -c release --show-bin-path)/cta-bench"
"$BENCH" broker
"$BENCH" store
