#!/usr/bin/env bash
# Installs what building and testing CTA needs on a Debian machine: the C libraries, RabbitMQ,
# and the MongoDB-wire server (SecantusDB, from PyPI, in a virtualenv under .venv/).
# Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

APT_PACKAGES=(pkg-config libxml2 librabbitmq-dev libmongoc-dev libbson-dev libssl-dev rabbitmq-server openssl python3-venv)
SECANTUS_VERSION="${CTA_SECANTUS_VERSION:-0.7.0b3}"

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/secantusd-py" ]; then
    echo "setup: installing SecantusDB $SECANTUS_VERSION into .venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "SecantusDB==$SECANTUS_VERSION"
fi
echo "setup: ok"
