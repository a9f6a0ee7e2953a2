#!/usr/bin/env bash
# A private, throwaway RabbitMQ node for the broker-restart chaos test. Never touches the
# machine's own RabbitMQ: separate node name, ports, epmd port, and state directory. Processes
# are stopped by PID, never by name.
#
#   tests/chaos-rabbitmq.sh start     # node chaos@localhost on 127.0.0.1:$PORT (default 5673)
#   tests/chaos-rabbitmq.sh restart   # SIGTERM + start again, keeping its data
#   tests/chaos-rabbitmq.sh stop      # stop the node and its epmd, delete the state
#
# Chaos test:
#   tests/chaos-rabbitmq.sh start
#   AETHERV_AMQP_URL=amqp://guest:guest@127.0.0.1:5673/%2f \
#   AETHERV_CHAOS_RESTART="$PWD/tests/chaos-rabbitmq.sh restart" \
#     cargo test -p aetherv-broker --test it -- --ignored survives_a_broker_restart
#   tests/chaos-rabbitmq.sh stop
set -euo pipefail

D=${AETHERV_CHAOS_DIR:-/tmp/aetherv-chaos-rmq}
PORT=${AETHERV_CHAOS_PORT:-5673}
export HOME=$D/home
export RABBITMQ_NODENAME=chaos@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$PORT
export RABBITMQ_DIST_PORT=$((PORT + 20000))
export ERL_EPMD_PORT=14369
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_MNESIA_BASE=$D/mnesia
export RABBITMQ_LOG_BASE=$D/log
export RABBITMQ_ENABLED_PLUGINS_FILE=$D/enabled_plugins
export RABBITMQ_PID_FILE=$D/rabbit.pid
# The machine's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672; use our own config.
export RABBITMQ_CONFIG_FILE=$D/rabbitmq.conf

start() {
    mkdir -p "$HOME" "$D/mnesia" "$D/log"
    echo '[].' > "$D/enabled_plugins"
    echo "listeners.tcp.local = 127.0.0.1:$PORT" > "$D/rabbitmq.conf"
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$D/server.out" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
        # The AMQP listener opens at the end of boot.
        if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.25
    done
    echo "chaos rabbitmq did not start; see $D/server.out and $D/log" >&2
    return 1
}

stop_node() {
    [ -f "$RABBITMQ_PID_FILE" ] || return 0
    local pid
    pid=$(cat "$RABBITMQ_PID_FILE")
    if kill -0 "$pid" 2> /dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$RABBITMQ_PID_FILE"
}

stop_epmd() {
    local pid
    pid=$(ss -ltnpH "sport = :$ERL_EPMD_PORT" 2> /dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$pid" ]; then kill -TERM "$pid" 2> /dev/null || true; fi
}

case "${1:-}" in
    start) start ;;
    restart) stop_node; sleep 1; start ;;
    stop) stop_node; stop_epmd; rm -rf "$D" ;;
    *) echo "usage: $0 start|restart|stop" >&2; exit 64 ;;
esac
