#!/usr/bin/env bash
# Starts a throwaway RabbitMQ (Debian's rabbitmq-server) with all state in a temp dir on free
# ports, waits until it accepts AMQP, and prints `export` lines for AETHERV_AMQP_URL and the PIDs
# to stop. Installs rabbitmq-server first when it is missing. Usage:
#   eval "$(scripts/rabbitmq-throwaway.sh start)"   ...   scripts/rabbitmq-throwaway.sh stop "$AETHERV_RMQ_DIR"
set -euo pipefail

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
start)
  if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    echo "installing rabbitmq-server (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq rabbitmq-server >&2
  fi
  dir=$(mktemp -d /tmp/aetherv-rmq.XXXXXX)
  port=$(free_port); dist=$(free_port); epmd=$(free_port)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  echo '[].' > "$dir/enabled_plugins"
  # Our own config file, so the machine's /etc/rabbitmq/rabbitmq.conf (which may pin 5672) is not read.
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$port" > "$dir/rabbitmq.conf"
  : > "$dir/rabbitmq-env.conf"
  node="aetherv$$@localhost"
  (
    export HOME="$dir/home" RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" \
      ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
      RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$dir/server.out" 2>&1 &
    echo $! > "$dir/wrapper.pid"
  )
  echo "$epmd" > "$dir/epmd.port"
  for _ in $(seq 1 120); do
    if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export AETHERV_AMQP_URL='amqp://guest:guest@127.0.0.1:$port/%2f'"
      echo "export AETHERV_RMQ_DIR='$dir'"
      # For tests that drive the node with rabbitmqctl (the CLI itself, not Debian's wrapper,
      # which switches to the rabbitmq user and its cookie): its name, cookie home, epmd port.
      echo "export AETHERV_RMQ_NODE='$node' AETHERV_RMQ_HOME='$dir/home' AETHERV_RMQ_EPMD_PORT='$epmd'"
      echo "throwaway RabbitMQ on 127.0.0.1:$port (state in $dir)" >&2
      exit 0
    fi
    sleep 0.5
  done
  echo "throwaway RabbitMQ did not start; log follows" >&2
  tail -50 "$dir/server.out" >&2 || true
  exit 1
  ;;
stop)
  dir="${2:?usage: stop DIR}"
  [ -d "$dir" ] || exit 0
  # Stop by PID, never by name: the machine may run its own RabbitMQ.
  if [ -f "$dir/wrapper.pid" ]; then
    wp=$(cat "$dir/wrapper.pid")
    pkill -TERM -s "$wp" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$wp" 2>/dev/null || break; sleep 0.25; done
    pkill -KILL -s "$wp" 2>/dev/null || true
  fi
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
  echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
