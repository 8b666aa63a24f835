#!/usr/bin/env bash
# Starts and stops the services CTA's tests and tools run against, isolated from anything else on the
# machine: a private RabbitMQ node and a SecantusDB (MongoDB wire protocol) server, both on loopback,
# on private ports, with all their state under one directory, stopped by pid.
#
#   scripts/services.sh start            start both, wait until they answer, write $DIR/env
#   scripts/services.sh stop             stop both (by pid) and remove nothing else
#   scripts/services.sh stop-rabbitmq | start-rabbitmq | stop-mongo | start-mongo
#   scripts/services.sh env              print the exports for the running services
#
# Environment: CTA_SERVICES_DIR (default .services/ in the project), CTA_AMQP_PORT (21672),
# CTA_AMQPS_PORT (21671), CTA_RABBIT_DIST_PORT (21673), CTA_EPMD_PORT (21369), CTA_MONGO_PORT (21017).
# Keep ports below Linux's ephemeral range (32768-60999): a client reconnecting in a loop to a port in that
# range while the server is down can connect to itself, and then holds the port the server needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CTA_SERVICES_DIR:-$ROOT/.services}"
AMQP_PORT="${CTA_AMQP_PORT:-21672}"
AMQPS_PORT="${CTA_AMQPS_PORT:-21671}"
DIST_PORT="${CTA_RABBIT_DIST_PORT:-21673}"
EPMD_PORT="${CTA_EPMD_PORT:-21369}"
MONGO_PORT="${CTA_MONGO_PORT:-21017}"
NODENAME="cta_${AMQP_PORT}@localhost"
RABBIT_DIR="$DIR/rabbitmq"
MONGO_DIR="$DIR/mongo"
TLS_DIR="$DIR/tls"

log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

rabbit_env() {
    # One connection per agent (the gateway's bench opens thousands): as many open files as allowed.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    export HOME="$RABBIT_DIR/home"
    export ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_NODENAME="$NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RABBIT_DIR/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$RABBIT_DIR/rabbitmq-env.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia"
    export RABBITMQ_LOG_BASE="$RABBIT_DIR/log"
    export RABBITMQ_PID_FILE="$RABBIT_DIR/rabbitmq.pid"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$RABBIT_DIR/plugins-expand"
}

make_tls() {
    [ -f "$TLS_DIR/client.pem" ] && return 0
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=CTA test CA" \
            -keyout ca.key -out ca.pem >/dev/null 2>&1
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr >/dev/null 2>&1
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile san.ext -out server.pem >/dev/null 2>&1
        # A client certificate from the same CA, for gateways that ask agents for one.
        openssl req -newkey rsa:2048 -nodes -subj "/CN=cta-agent" -keyout client.key -out client.csr >/dev/null 2>&1
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out client.pem >/dev/null 2>&1
        chmod 644 ./*.pem ./*.key
    )
}

start_rabbitmq() {
    if [ -f "$RABBIT_DIR/server.pid" ] && kill -0 "$(cat "$RABBIT_DIR/server.pid")" 2>/dev/null; then
        log "rabbitmq already running"
        return 0
    fi
    port_open "$AMQP_PORT" && { log "port $AMQP_PORT is taken by something else"; return 1; }
    mkdir -p "$RABBIT_DIR/home" "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log" "$RABBIT_DIR/plugins-expand"
    make_tls
    if [ ! -f "$RABBIT_DIR/home/.erlang.cookie" ]; then
        head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RABBIT_DIR/home/.erlang.cookie"
        chmod 400 "$RABBIT_DIR/home/.erlang.cookie"
    fi
    cat >"$RABBIT_DIR/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = warning
CONF
    echo "[]." >"$RABBIT_DIR/advanced.config"
    : >"$RABBIT_DIR/rabbitmq-env.conf"
    echo "[]." >"$RABBIT_DIR/enabled_plugins"
    (
        rabbit_env
        cd "$RABBIT_DIR"
        exec /usr/lib/rabbitmq/bin/rabbitmq-server >"$RABBIT_DIR/log/stdout.log" 2>&1
    ) &
    echo $! >"$RABBIT_DIR/server.pid"
    echo "$EPMD_PORT" >"$RABBIT_DIR/epmd.port"
    local deadline=$((SECONDS + 90))
    until port_open "$AMQP_PORT"; do
        if ! kill -0 "$(cat "$RABBIT_DIR/server.pid")" 2>/dev/null; then
            log "rabbitmq exited during start; last log lines:"
            tail -20 "$RABBIT_DIR/log/stdout.log" >&2 || true
            return 1
        fi
        ((SECONDS < deadline)) || { log "rabbitmq did not open port $AMQP_PORT in 90 s"; return 1; }
        sleep 0.3
    done
    (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup --timeout 60 >/dev/null)
    # Virtual hosts of their own for the agent tests (which stand in for the coordinator), the end-to-end
    # tests (which run real coordinators), the benches (which run an in-process coordinator) and the gateway's
    # tests (whose agent events would land in the coordinator queues others count): each sees only its own.
    (rabbit_env
     /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost cta-agents >/dev/null 2>&1 || true
     /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p cta-agents guest ".*" ".*" ".*" >/dev/null
     /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost cta-e2e >/dev/null 2>&1 || true
     /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p cta-e2e guest ".*" ".*" ".*" >/dev/null
     /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost cta-bench >/dev/null 2>&1 || true
     /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p cta-bench guest ".*" ".*" ".*" >/dev/null
     /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost cta-gateway >/dev/null 2>&1 || true
     /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p cta-gateway guest ".*" ".*" ".*" >/dev/null)
    log "rabbitmq up on 127.0.0.1:$AMQP_PORT (amqps $AMQPS_PORT), pid $(cat "$RABBIT_DIR/server.pid")"
}

stop_rabbitmq() {
    local pidfile="$RABBIT_DIR/server.pid"
    if [ -f "$pidfile" ]; then
        local pid
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            local grace="${CTA_RABBIT_STOP_GRACE:-15}"
            for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                log "rabbitmq did not stop in $grace s, killing"
                pkill -KILL -P "$pid" 2>/dev/null || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$pidfile"
        # The Erlang VM is the script's child; make sure it is gone before the port is reused.
        if [ -f "$RABBIT_DIR/rabbitmq.pid" ]; then
            local beam
            beam="$(cat "$RABBIT_DIR/rabbitmq.pid" 2>/dev/null || true)"
            if [ -n "$beam" ]; then
                for _ in $(seq 1 100); do kill -0 "$beam" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$beam" 2>/dev/null || true
            fi
            rm -f "$RABBIT_DIR/rabbitmq.pid"
        fi
        local epmd_port="$EPMD_PORT"
        [ -f "$RABBIT_DIR/epmd.port" ] && epmd_port="$(cat "$RABBIT_DIR/epmd.port")"
        (rabbit_env; ERL_EPMD_PORT="$epmd_port" epmd -kill >/dev/null 2>&1 || true)
        log "rabbitmq stopped"
    fi
}

start_mongo() {
    if [ -f "$MONGO_DIR/server.pid" ] && kill -0 "$(cat "$MONGO_DIR/server.pid")" 2>/dev/null; then
        log "mongo already running"
        return 0
    fi
    port_open "$MONGO_PORT" && { log "port $MONGO_PORT is taken by something else"; return 1; }
    local bin="$ROOT/.venv/bin/secantusd-py"
    [ -x "$bin" ] || { log "SecantusDB missing: run scripts/setup.sh"; return 1; }
    mkdir -p "$MONGO_DIR/data"
    # An explicit (empty) config file turns off SecantusDB's search for one in ~ and /etc.
    : >"$MONGO_DIR/secantusd.toml"
    (
        cd "$MONGO_DIR"
        exec "$bin" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$MONGO_DIR/data" \
            --log-level WARNING --config "$MONGO_DIR/secantusd.toml" >"$MONGO_DIR/server.log" 2>&1
    ) &
    echo $! >"$MONGO_DIR/server.pid"
    local deadline=$((SECONDS + 60))
    until port_open "$MONGO_PORT"; do
        if ! kill -0 "$(cat "$MONGO_DIR/server.pid")" 2>/dev/null; then
            log "SecantusDB exited during start; last log lines:"
            tail -20 "$MONGO_DIR/server.log" >&2 || true
            return 1
        fi
        ((SECONDS < deadline)) || { log "SecantusDB did not open port $MONGO_PORT in 60 s"; return 1; }
        sleep 0.2
    done
    log "mongo (SecantusDB) up on 127.0.0.1:$MONGO_PORT, pid $(cat "$MONGO_DIR/server.pid")"
}

stop_mongo() {
    local pidfile="$MONGO_DIR/server.pid"
    if [ -f "$pidfile" ]; then
        local pid
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
        log "mongo stopped"
    fi
}

print_env() {
    cat <<ENV
export CTA_AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
export CTA_AMQPS_URL="amqps://guest:guest@localhost:$AMQPS_PORT/"
export CTA_AMQP_AGENTS_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/cta-agents"
export CTA_AMQP_E2E_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/cta-e2e"
export CTA_AMQP_BENCH_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/cta-bench"
export CTA_AMQP_GATEWAY_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/cta-gateway"
export CTA_AMQPS_CA_FILE="$TLS_DIR/ca.pem"
export CTA_MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT/?retryWrites=false"
export CTA_SERVICES_SCRIPT="$ROOT/scripts/services.sh"
export CTA_SERVICES_DIR="$DIR"
ENV
}

case "${1:-}" in
start)
    mkdir -p "$DIR"
    start_mongo &
    mongo_job=$!
    start_rabbitmq
    wait "$mongo_job"
    print_env >"$DIR/env"
    ;;
stop)
    stop_rabbitmq
    stop_mongo
    # Private nodes that tests started under this directory (for broker-restart tests).
    for nested in "$DIR"/*/rabbitmq; do
        [ -f "$nested/server.pid" ] || continue
        RABBIT_DIR="$nested" stop_rabbitmq
    done
    # Private MongoDB-wire servers that tests started under this directory (for restart tests).
    for nested in "$DIR"/*/mongo; do
        [ -f "$nested/server.pid" ] || continue
        MONGO_DIR="$nested" stop_mongo
    done
    ;;
start-rabbitmq) start_rabbitmq ;;
stop-rabbitmq) stop_rabbitmq ;;
start-mongo) start_mongo ;;
stop-mongo) stop_mongo ;;
env) print_env ;;
*) echo "usage: $0 start|stop|start-rabbitmq|stop-rabbitmq|start-mongo|stop-mongo|env" >&2; exit 2 ;;
esac
