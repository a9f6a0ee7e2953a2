#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: schemathesis (tests/peers/requirements-web.txt) reads
# /api/openapi.json from `aetherv api --simulated 2` and sends generated requests, valid and
# invalid, with an admin token, every check on (tests/peers/schemathesis.toml); fails on any
# 5xx and on any response (status, content type, headers, body) the OpenAPI document does not
# describe. Bounded in time
# (AETHERV_API_FUZZ_SECONDS, default 80, at most 120). Reports under target/test-artifacts/api-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${AETHERV_BIN:-$root/target/debug/aetherv}
py=${AETHERV_PYTHON:-$root/.venv/bin/python}
seconds=${AETHERV_API_FUZZ_SECONDS:-80}
[ "$seconds" -gt 120 ] && seconds=120
st="$(dirname "$py")/schemathesis"
[ -x "$bin" ] || cargo build -q --bin aetherv
if [ ! -x "$st" ]; then
  "$py" -m pip install -q --disable-pip-version-check -r tests/peers/requirements-web.txt
fi

out="$root/target/test-artifacts/api-fuzz"
rm -rf "$out" && mkdir -p "$out"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$("$py" -c 'import secrets; print(secrets.token_urlsafe(24))')

# The console chat reads stdin: a FIFO this script holds open (and never writes) keeps it
# open and empty for the server's lifetime.
mkfifo "$out/stdin"
exec 3<>"$out/stdin"
AETHERV_API_TOKEN=$token AETHERV_AMQP_URL='' "$bin" api --simulated 2 \
  --listen "127.0.0.1:$port" --latency-ms 20 < "$out/stdin" > "$out/api.log" 2>&1 &
pid=$!
stop() {
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "aetherv api did not stop within 10 s of SIGTERM; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  exec 3>&-
  rm -f "$out/stdin"
}
trap stop EXIT

for _ in $(seq 1 150); do
  if "$py" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1).status == 200 else 1)" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "aetherv api exited:"; cat "$out/api.log"; exit 1; }
  sleep 0.2
done

echo "schemathesis against http://127.0.0.1:$port for at most ${seconds}s"
set +e
# schemathesis keeps state in .schemathesis/ under its working directory: the artifact folder.
cd "$out"
timeout $((seconds + 60)) "$st" --config-file "$root/tests/peers/schemathesis.toml" run "http://127.0.0.1:$port/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-time "$seconds" \
  --workers 2 \
  --request-timeout 10 \
  --seed "${AETHERV_API_FUZZ_SEED:-14}" \
  --output-sanitize true \
  --report junit,ndjson --report-dir "$out" \
  2>&1 | tee "$out/schemathesis.txt"
status=${PIPESTATUS[0]}
set -e
cd "$root"
# The token must not have reached the server's log.
if grep -qF "$token" "$out/api.log"; then
  echo "the API token appears in the server's log"; status=1
fi
exit "$status"
