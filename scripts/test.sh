#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what it needs (MIT Kerberos: the
# KDC for the Kerberos tests and the GSSAPI headers the `kerberos` feature builds against; a
# Python venv with the test peers; rabbitmq-server when no broker answers), starts a throwaway
# RabbitMQ when none is reachable at AETHERV_AMQP_URL, then runs the quality gates and every
# test, with the `kerberos` feature on.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s ==\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
cargo --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "MIT Kerberos (KDC, GSSAPI headers, libclang for bindgen)"
# The Kerberos tests run a throwaway realm (krb5kdc, kdb5_util, kadmin.local); the `kerberos`
# feature builds libgssapi-sys against libkrb5-dev with bindgen (libclang); the Python peer's
# gssapi and krb5 packages build against libkrb5-dev too.
if [ ! -x /usr/sbin/krb5kdc ] || [ ! -x /usr/sbin/kdb5_util ] || [ ! -x /usr/sbin/kadmin.local ] \
  || ! command -v krb5-config >/dev/null 2>&1 || ! dpkg -s libclang-dev >/dev/null 2>&1; then
  echo "installing krb5-kdc krb5-admin-server krb5-user libkrb5-dev libclang-dev (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq krb5-kdc krb5-admin-server krb5-user libkrb5-dev libclang-dev
fi

step "python test peers (.venv)"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import winrm, pika, spnego, jsonschema, gssapi, krb5, prometheus_client' 2>/dev/null; then
  if ! python3 -m venv .venv 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --disable-pip-version-check -r tests/peers/requirements.txt
fi
export AETHERV_PYTHON="$root/.venv/bin/python"

step "status page browser and API fuzzing (chromium, chromium-driver, selenium, schemathesis)"
# The status page's browser test drives Debian's chromium through chromedriver (W3C WebDriver)
# from selenium; scripts/api-fuzz.sh runs schemathesis against `aetherv api --simulated 2`.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium chromium-driver (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
fi
if ! .venv/bin/python -c 'import selenium, schemathesis' 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r tests/peers/requirements-web.txt
fi

step "RabbitMQ"
# The broker-restart test runs a RabbitMQ node of its own, so the server must be installed even
# when a broker already answers.
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  echo "installing rabbitmq-server (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rabbitmq-server
fi
export AETHERV_AMQP_URL="${AETHERV_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# host and port of the AMQP URL (amqp://user:pass@host:port/vhost)
rest=${AETHERV_AMQP_URL#*://}; rest=${rest#*@}; rest=${rest%%/*}
amqp_host=${rest%%:*}; amqp_port=${rest##*:}
[ "$amqp_port" = "$rest" ] && amqp_port=5672
[ -n "$amqp_host" ] || amqp_host=127.0.0.1
set -- "$amqp_host" "$amqp_port"
# How many milliseconds the local broker's clock (Erlang system time) is behind this machine's, when
# it can be asked (a RabbitMQ on this machine, rabbitmqctl usable); empty otherwise. An Erlang
# node started in no-time-warp mode before the machine's clock was stepped keeps the old offset
# for good, and then stream timestamps (`x-stream-offset` by time) are off by that much.
broker_clock_lag() {
  case "$1" in 127.*|localhost) ;; *) return 0 ;; esac
  command -v rabbitmqctl >/dev/null 2>&1 || return 0
  local theirs ours
  theirs=$(timeout 20 rabbitmqctl -q eval 'erlang:system_time(millisecond).' 2>/dev/null | tail -1) || return 0
  ours=$(date +%s%3N)
  case "$theirs" in ''|*[!0-9]*) return 0 ;; esac
  echo $((ours - theirs))
}
up=false lag=""
if (echo > "/dev/tcp/$1/$2") 2>/dev/null; then
  up=true
  lag=$(broker_clock_lag "$1")
fi
# Stream replays by time resolve to whole seconds, so the clocks must agree well within one
# (the measurement itself includes the CLI's exit, a few hundred milliseconds).
if $up && { [ -z "$lag" ] || [ "${lag#-}" -le 700 ]; }; then
  echo "using RabbitMQ at $1:$2"
else
  if [ -n "$lag" ]; then
    echo "the RabbitMQ at $1:$2 keeps time ${lag} ms off this machine's clock (its stream timestamps would be wrong); starting a throwaway one"
  else
    echo "no RabbitMQ at $1:$2; starting a throwaway one"
  fi
  eval "$(scripts/rabbitmq-throwaway.sh start)"
  trap 'scripts/rabbitmq-throwaway.sh stop "$AETHERV_RMQ_DIR"' EXIT
fi
set --

step "fmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --features aetherv/kerberos -- -D warnings

step "tests"
# Not under `set -e`: a failing run still prints its summary below.
set +e
cargo test --workspace --features aetherv/kerberos --no-fail-fast 2>&1 | tee /tmp/aetherv-test-$$.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' /tmp/aetherv-test-$$.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/aetherv-test-$$.log | awk '{s+=$1} END {print s+0}')
rm -f /tmp/aetherv-test-$$.log
echo
echo "$passed passed, $failed failed"

step "helm chart (offline: lint, render every profile, Kubernetes schemas)"
if ! .venv/bin/python -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r tests/peers/requirements-helm.txt
fi
set +e
.venv/bin/python scripts/helm-check.py
helm_status=$?
set -e
[ "$status" -eq 0 ] && status=$helm_status

step "container image (buildah, FROM scratch, nothing pulled)"
# The test build's binary (kerberos feature on) in the image's root file system; the image's
# own binary is started with --version as user 10001. The release image is built the same way
# from target/release/aetherv (see docs/operations.md).
set +e
scripts/image.sh target/debug/aetherv localhost/aetherv:ci
image_status=$?
set -e
[ "$status" -eq 0 ] && status=$image_status

step "API fuzzing (schemathesis against aetherv api --simulated 2, at most 2 min)"
# No 5xx and no answer outside /api/openapi.json; reports in target/test-artifacts/api-fuzz/.
set +e
AETHERV_BIN="$root/target/debug/aetherv" scripts/api-fuzz.sh
api_fuzz_status=$?
set -e
[ "$status" -eq 0 ] && status=$api_fuzz_status

step "chaos soak (three-node RabbitMQ cluster of its own, CI size: 150 jobs over 20 hosts)"
# Its own three nodes even when 5672 answers, removed on exit; the seed is printed (rerun with
# scripts/soak.sh --seed N). Figures: docs/reliability.md.
set +e
timeout 300 scripts/soak.sh ${AETHERV_SOAK_SEED:+--seed "$AETHERV_SOAK_SEED"}
soak_status=$?
set -e
[ "$status" -eq 0 ] && status=$soak_status

step "fuzz (every parser of outside input, 5 s a target)"
# Inputs tried per target are printed; a crash or a hang fails the run and is saved under
# fuzz/found/<target>/ (copy it to fuzz/regressions/<target>/ once fixed).
set +e
cargo run -q -p aetherv-fuzz -- --seconds "${AETHERV_FUZZ_SECONDS:-5}" --save fuzz/found
fuzz_status=$?
set -e
[ "$status" -eq 0 ] && status=$fuzz_status
exit "$status"
