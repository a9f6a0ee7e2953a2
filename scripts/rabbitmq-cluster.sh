#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine (Debian's rabbitmq-server), for the chaos soak
# and failover tests: all state in one temp dir, free ports, each node with its own config
# file, one EPMD of its own on a free port, one shared Erlang cookie. Installs rabbitmq-server
# when it is missing. Never touches the machine's own RabbitMQ (nodes are found by the PIDs and
# ports recorded in the dir, never by name).
#
#   eval "$(scripts/rabbitmq-cluster.sh start)"     # prints export lines (see below)
#   scripts/rabbitmq-cluster.sh kill 2              # kill -9 of node 2's Erlang VM
#   scripts/rabbitmq-cluster.sh restart 2           # starts node 2 again; it rejoins the cluster
#   scripts/rabbitmq-cluster.sh stop-node 2         # a clean stop of node 2
#   scripts/rabbitmq-cluster.sh status              # cluster_status as node 1 sees it
#   scripts/rabbitmq-cluster.sh ctl 1 list_queues name type members
#   scripts/rabbitmq-cluster.sh stop                # every node, epmd, and the dir
#
# The dir is $AETHERV_RMQ_CLUSTER_DIR (printed by start) or --dir DIR before the command.
# Exports: AETHERV_AMQP_URL (the three nodes' URLs, comma-separated: the client fails over
# between them), AETHERV_RMQ_CLUSTER_DIR, AETHERV_RMQ_CLUSTER_URLS (one URL per node, space-
# separated, node 1 first).
set -euo pipefail

RMQ_BIN=/usr/lib/rabbitmq/bin
NODES=3

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }

dir="${AETHERV_RMQ_CLUSTER_DIR:-}"
if [ "${1:-}" = "--dir" ]; then dir="$2"; shift 2; fi

node_name() { echo "$(cat "$dir/tag")-$1@localhost"; }
node_port() { cat "$dir/n$1/port"; }

# The environment of node $1 (for the server and for the CLI talking to it).
node_env() {
  local n=$1 d="$dir/n$1"
  echo HOME="$dir/home" RABBITMQ_NODENAME="$(node_name "$n")" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(cat "$d/port")" RABBITMQ_DIST_PORT="$(cat "$d/dist")" \
    ERL_EPMD_PORT="$(cat "$dir/epmd.port")" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
}

# rabbitmqctl against node $1 (the CLI itself, not Debian's wrapper, which switches to the
# rabbitmq user and its cookie), bounded in time.
ctl() {
  local n=$1; shift
  # shellcheck disable=SC2046
  env $(node_env "$n") timeout 60 "$RMQ_BIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@"
}

amqp_up() { (echo > "/dev/tcp/127.0.0.1/$(node_port "$1")") 2>/dev/null; }

# Starts node $1's server in a session of its own (its PID is the session id).
launch() {
  local n=$1 d="$dir/n$1"
  (
    # shellcheck disable=SC2046
    export $(node_env "$n")
    setsid "$RMQ_BIN/rabbitmq-server" >> "$d/server.out" 2>&1 < /dev/null &
    echo $! > "$d/session.pid"
  )
}

wait_booted() {
  local n=$1
  for _ in $(seq 1 240); do
    if amqp_up "$n" && ctl "$n" await_startup > /dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  tail -40 "$dir/n$n/server.out" >&2 || true
  die "node $n did not start"
}

# Every process of node $1's session, killed with signal $2; waits until they are gone.
kill_session() {
  local n=$1 sig=$2 sid
  sid=$(cat "$dir/n$n/session.pid" 2>/dev/null || echo "")
  [ -n "$sid" ] || return 0
  pkill "-$sig" -s "$sid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    pgrep -s "$sid" > /dev/null 2>&1 || return 0
    sleep 0.25
  done
  pkill -KILL -s "$sid" 2>/dev/null || true
}

check_node() {
  case "${1:-}" in 1|2|3) ;; *) die "NODE must be 1, 2 or 3" ;; esac
  [ -n "$dir" ] && [ -d "$dir" ] || die "no cluster dir (set AETHERV_RMQ_CLUSTER_DIR or --dir DIR)"
}

urls() {
  local out="" n
  for n in $(seq 1 $NODES); do
    out="$out${out:+,}amqp://guest:guest@127.0.0.1:$(node_port "$n")/%2f"
  done
  echo "$out"
}

cmd="${1:-}"; shift || true
case "$cmd" in
start)
  if [ ! -x "$RMQ_BIN/rabbitmq-server" ]; then
    echo "installing rabbitmq-server (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq rabbitmq-server >&2
  fi
  dir=$(mktemp -d /tmp/aetherv-rmqc.XXXXXX)
  echo "aetherv-c$$" > "$dir/tag"
  free_port > "$dir/epmd.port"
  mkdir -p "$dir/home"
  # One cookie for the three nodes and the CLI.
  python3 -c 'import secrets; print(secrets.token_hex(20), end="")' > "$dir/home/.erlang.cookie"
  chmod 400 "$dir/home/.erlang.cookie"
  echo '[].' > "$dir/enabled_plugins"
  : > "$dir/rabbitmq-env.conf"
  for n in $(seq 1 $NODES); do
    d="$dir/n$n"
    mkdir -p "$d/mnesia" "$d/log"
    free_port > "$d/port"; free_port > "$d/dist"
    # Our own config file, so the machine's /etc/rabbitmq/rabbitmq.conf (which may pin 5672)
    # is not read. Partitions heal on their own (pause_minority keeps a minority from acting).
    printf '%s\n' "listeners.tcp.default = 127.0.0.1:$(cat "$d/port")" \
      'loopback_users.guest = true' 'cluster_partition_handling = pause_minority' \
      'vm_memory_high_watermark.relative = 0.2' 'disk_free_limit.absolute = 50MB' > "$d/rabbitmq.conf"
  done
  # Clean up on a failed start.
  started=false
  trap '$started || AETHERV_RMQ_CLUSTER_DIR="$dir" "$0" stop >&2 || true' EXIT
  for n in $(seq 1 $NODES); do launch "$n"; done
  for n in $(seq 1 $NODES); do wait_booted "$n"; done
  for n in $(seq 2 $NODES); do
    ctl "$n" stop_app > /dev/null
    ctl "$n" join_cluster "$(node_name 1)" > /dev/null
    ctl "$n" start_app > /dev/null
  done
  ctl 1 await_online_nodes "$NODES" > /dev/null
  started=true
  echo "export AETHERV_AMQP_URL='$(urls)'"
  echo "export AETHERV_RMQ_CLUSTER_DIR='$dir'"
  echo "export AETHERV_RMQ_CLUSTER_URLS='$(urls | tr ',' ' ')'"
  echo "three-node RabbitMQ cluster on 127.0.0.1 ports $(node_port 1) $(node_port 2) $(node_port 3) (state in $dir)" >&2
  ;;
kill)
  check_node "${1:-}"
  kill_session "$1" KILL
  ;;
stop-node)
  check_node "${1:-}"
  ctl "$1" stop > /dev/null 2>&1 || true
  kill_session "$1" TERM
  ;;
restart)
  check_node "${1:-}"
  kill_session "$1" TERM
  launch "$1"
  wait_booted "$1"
  ctl "$1" await_online_nodes "$NODES" > /dev/null 2>&1 || true
  ;;
url)
  check_node "${1:-}"
  echo "amqp://guest:guest@127.0.0.1:$(node_port "$1")/%2f"
  ;;
running)
  # The nodes whose AMQP port answers, e.g. `1 3`.
  [ -n "$dir" ] && [ -d "$dir" ] || die "no cluster dir"
  up=""
  for n in $(seq 1 $NODES); do amqp_up "$n" && up="$up${up:+ }$n"; done
  echo "$up"
  ;;
status)
  [ -n "$dir" ] && [ -d "$dir" ] || die "no cluster dir"
  n=1
  for m in $(seq 1 $NODES); do if amqp_up "$m"; then n=$m; break; fi; done
  ctl "$n" cluster_status
  ;;
ctl)
  check_node "${1:-}"
  n=$1; shift
  ctl "$n" "$@"
  ;;
stop)
  [ -n "$dir" ] || die "no cluster dir (set AETHERV_RMQ_CLUSTER_DIR or --dir DIR)"
  [ -d "$dir" ] || exit 0
  for n in $(seq 1 $NODES); do [ -d "$dir/n$n" ] && kill_session "$n" TERM; done
  port=$(cat "$dir/epmd.port" 2>/dev/null || echo "")
  if [ -n "$port" ]; then
    # epmd daemonizes on its own; find ours by the port in its environment.
    for p in $(pgrep -x epmd 2>/dev/null || true); do
      if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "ERL_EPMD_PORT=$port"; then
        kill "$p" 2>/dev/null || true
      fi
    done
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 [--dir DIR] start|stop|kill N|stop-node N|restart N|url N|running|status|ctl N ARGS..." >&2
  exit 2
  ;;
esac
