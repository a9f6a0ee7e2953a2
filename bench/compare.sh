#!/usr/bin/env bash
# The side-by-side job benchmark (issue 17): ours against a Celery peer on the same shapes.
#   bench/compare.sh [--peer] [--quick] [--only SHAPE] [--throwaway] [--bin PATH]
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
exec "$venv/bin/python" "$here/compare.py" "$@"
