#!/usr/bin/env bash
# The chaos soak on a three-node RabbitMQ cluster of its own (issue 16; docs/reliability.md):
# starts the cluster (scripts/rabbitmq-cluster.sh; never the machine's RabbitMQ, even when
# 5672 answers), runs tests/soak/soak.py against target/debug/aetherv (built if missing), and
# removes the cluster and every temp dir on exit, also on failure.
#
#   scripts/soak.sh                          # CI size: 150 jobs over 20 hosts
#   scripts/soak.sh --full                   # 1,000 jobs over 50 hosts
#   scripts/soak.sh --seed 42 [--jobs N --hosts H ...]   # any soak.py option
#
# Environment: AETHERV_BIN (the binary), AETHERV_PYTHON (a Python with pika; default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

size=(--jobs 150 --hosts 20 --duration 110)
args=()
for a in "$@"; do
  if [ "$a" = "--full" ]; then
    size=(--jobs 1000 --hosts 50 --duration 480 --drain-timeout 300)
  else
    args+=("$a")
  fi
done

bin="${AETHERV_BIN:-$root/target/debug/aetherv}"
if [ ! -x "$bin" ]; then
  cargo build -q -p aetherv
fi
python="${AETHERV_PYTHON:-$root/.venv/bin/python}"
if ! "$python" -c 'import pika' 2>/dev/null; then
  echo "soak: $python has no pika; run scripts/test.sh once or pip install -r tests/peers/requirements.txt" >&2
  exit 2
fi

eval "$(scripts/rabbitmq-cluster.sh start)"
pid=""
cleanup() {
  # soak.py stops its processes and removes its dir on SIGTERM; then the cluster goes.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  scripts/rabbitmq-cluster.sh --dir "$AETHERV_RMQ_CLUSTER_DIR" stop
}
trap cleanup EXIT
trap 'exit 143' TERM INT
"$python" tests/soak/soak.py --bin "$bin" --cluster-script "$root/scripts/rabbitmq-cluster.sh" \
  "${size[@]}" "${args[@]}" &
pid=$!
wait "$pid"
