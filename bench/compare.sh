#!/usr/bin/env bash
# The side-by-side job benchmark (issue 17): ours against a Celery peer on the same shapes.
#   bench/compare.sh [--peer] [--quick] [--only SHAPE] [--throwaway] [--bin PATH] [--worker-setting K=V]
# Without --bin it builds and measures this tree's target/release/aetherv.
# Makes bench/.venv from bench/requirements.txt when it is missing, then runs bench/compare.py.
# Broker: $AETHERV_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/%2f; --throwaway starts one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
  echo "compare.sh: making $venv from requirements.txt" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$venv/.requirements.txt"
fi
cd "$here/.."
# Without --bin the benchmark measures this tree: build its release binary (a no-op when current).
case " $* " in
  *" --bin "*) ;;
  *) cargo build -q --release --bin aetherv ;;
esac
exec "$venv/bin/python" "$here/compare.py" "$@"
