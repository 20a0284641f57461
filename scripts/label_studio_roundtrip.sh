#!/usr/bin/env bash
# The Label Studio round trip against a real server: installs label-studio into its own
# venv (its pinned dependencies stay apart from ours) and the SDK extra into .venv (or
# $PYTHON's environment), starts a fresh server (SQLite, a temporary home, a legacy API
# token), runs tests/test_label_studio_server.py and, with the SDK, the fake-server
# delivery tests, and stops the server. The first start migrates the database: a few
# minutes on 2 cores.
#
# The live test stops and restarts the server between a run and its resume; it calls
# `label_studio_roundtrip.sh stop` and `... start` (they read LS_HOME, LS_TOKEN, PORT and
# LS_VENV, which the round trip exports).
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VENV=${LS_VENV:-.venv-label-studio}
PORT=${PORT:-8093}
PYTHON=${PYTHON:-.venv/bin/python}

wait_for_health() {
  for _ in $(seq 1 600); do
    curl -sf "http://localhost:$PORT/health" > /dev/null && return 0
    kill -0 "$(cat "$LS_HOME/server.pid")" 2>/dev/null || { tail -20 "$LS_HOME/server.log"; return 1; }
    sleep 1
  done
  echo "Label Studio did not start"; tail -20 "$LS_HOME/server.log"; return 1
}

# In its own session (setsid), so that stopping it stops every process it started.
start_server() {
  LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true HOME="$LS_HOME" setsid "$LS_VENV/bin/label-studio" start \
    --no-browser --port "$PORT" --data-dir "$LS_HOME/data" \
    --username annotator@example.com --password star-al-test --user-token "$LS_TOKEN" \
    --enable-legacy-api-token >> "$LS_HOME/server.log" 2>&1 < /dev/null &
  echo $! > "$LS_HOME/server.pid"
  wait_for_health
}

# The server dies of the SIGTERM we send it; its status (143) must not become ours.
stop_server() {
  [ -f "$LS_HOME/server.pid" ] || return 0
  local pid; pid=$(cat "$LS_HOME/server.pid")
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  rm -f "$LS_HOME/server.pid"
}

case "${1:-}" in
  start) start_server; exit ;;
  stop) stop_server; exit ;;
  "") ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  python3 -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install --quiet "label-studio==1.23.*"
fi
"$PYTHON" -m pip install --quiet -c constraints.txt -e ".[label-studio,test]"
LS_HOME=$(mktemp -d)
LS_TOKEN=$(python3 -c "import secrets; print(secrets.token_hex(20))")
export LS_HOME LS_TOKEN PORT LS_VENV
trap 'stop_server; rm -rf "$LS_HOME"' EXIT
start_server
STAR_LABEL_STUDIO_URL="http://localhost:$PORT" LABEL_STUDIO_API_KEY="$LS_TOKEN" \
  STAR_LABEL_STUDIO_CONTROL="$PWD/scripts/label_studio_roundtrip.sh" \
  "$PYTHON" -m pytest -q tests/test_label_studio_server.py tests/test_label_studio_delivery.py -p no:cacheprovider
