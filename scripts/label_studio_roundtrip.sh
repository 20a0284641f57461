#!/usr/bin/env bash
# The Label Studio round trip against a real server: installs label-studio into its own
# venv (its pinned dependencies stay apart from ours) and the SDK extra into .venv, starts
# a fresh server (SQLite, a temporary home, a legacy API token), runs
# tests/test_label_studio_server.py, and stops the server. The first start migrates the
# database: a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VENV=${LS_VENV:-.venv-label-studio}
PORT=${PORT:-8093}
if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  python3 -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install --quiet "label-studio==1.23.*"
fi
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[label-studio,test]"
home=$(mktemp -d)
token=$(python3 -c "import secrets; print(secrets.token_hex(20))")
export LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true
HOME="$home" "$LS_VENV/bin/label-studio" start --no-browser --port "$PORT" --data-dir "$home/data" \
  --username annotator@example.com --password star-al-test --user-token "$token" \
  --enable-legacy-api-token > "$home/server.log" 2>&1 &
server=$!
# The server dies of the SIGTERM we send it; its status (143) must not become ours.
stop_server() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$home"; }
trap stop_server EXIT
for _ in $(seq 1 600); do
  curl -sf "http://localhost:$PORT/health" > /dev/null && break
  kill -0 $server 2>/dev/null || { tail -20 "$home/server.log"; exit 1; }
  sleep 1
done
curl -sf "http://localhost:$PORT/health" > /dev/null || { echo "Label Studio did not start"; tail -20 "$home/server.log"; exit 1; }
STAR_LABEL_STUDIO_URL="http://localhost:$PORT" LABEL_STUDIO_API_KEY="$token" \
  .venv/bin/python -m pytest -q tests/test_label_studio_server.py -p no:cacheprovider
