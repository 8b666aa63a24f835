# Sourced by run.sh and test.sh: installs what is missing, starts the private services, exports their URLs,
# and stops them by pid when the calling script exits, however it exits.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export CTA_SERVICES_DIR="${CTA_SERVICES_DIR:-$(mktemp -d /tmp/cta-services.XXXXXX)}"
cta_stop_services() { bash "$ROOT/scripts/services.sh" stop || true; }
trap cta_stop_services EXIT INT TERM
bash scripts/services.sh start
# shellcheck disable=SC1091
source "$CTA_SERVICES_DIR/env"
