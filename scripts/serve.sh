#!/usr/bin/env bash
# `make serve`: the whole operating setup on this machine, in one terminal.
#
# A Prefect server on 127.0.0.1:$PREFECT_PORT (analytics off), a moto S3 endpoint on
# 127.0.0.1:$S3_PORT, the fmp-process work pool, every deployment in prefect.yaml, the
# stream(s) in $SERVE_STREAMS published to S3, then a worker in the foreground.
# Ctrl-C stops the worker, the server and moto. Logs: .fmp/serve/.
set -euo pipefail
set -m  # background jobs in their own process groups, so they keep their SIGINT handlers
cd "$(dirname "$0")/.."

BIN=.venv/bin
PREFECT_PORT=${PREFECT_PORT:-4200}
S3_PORT=${S3_PORT:-9000}
SERVE_STREAMS=${SERVE_STREAMS-red_circle_left_of_blue_square}  # SERVE_STREAMS= publishes none
LOGS=.fmp/serve
mkdir -p "$LOGS"

export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_LOGGING_LEVEL=${SERVE_LOGGING_LEVEL:-INFO}  # flow-run logs in the UI
export PREFECT_API_URL="http://127.0.0.1:${PREFECT_PORT}/api"
export PREFECT_UI_API_URL="$PREFECT_API_URL"
# Every flow run started from here beats every 30 s, as the zombie automation expects (prefect.yaml
# sets the same for its deployments, whichever worker runs them).
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30
# Settings and credentials reach the worker's flow runs through this environment only.
export FMP_STORAGE_URL=${FMP_STORAGE_URL:-s3://fmp/streams}
export FMP_S3_ENDPOINT_URL=${FMP_S3_ENDPOINT_URL:-http://127.0.0.1:${S3_PORT}}
export FMP_HOME=${FMP_HOME:-$PWD/.fmp}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}        # moto accepts any key
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# ... and every `fmp` command, in any terminal, through $FMP_HOME/settings.env (the worker's flow
# runs read it too), so a stream created or published elsewhere lands where the worker looks.
# It describes this running setup: on exit the file it replaced comes back (or it goes).
mkdir -p "$FMP_HOME"
SETTINGS="$FMP_HOME/settings.env"
[ -f "$SETTINGS" ] && cp "$SETTINGS" "$SETTINGS.before-serve"
cat >"$SETTINGS" <<EOF
# written by make serve (scripts/serve.sh); read by every fmp command and flow run
FMP_STORAGE_URL=$FMP_STORAGE_URL
FMP_S3_ENDPOINT_URL=$FMP_S3_ENDPOINT_URL
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION
PREFECT_API_URL=$PREFECT_API_URL
EOF

# With `set -m` each background job is its own process group (PGID = its PID), so a signal
# to "-PID" reaches the job's children too (moto_server under its launcher, flow runs under
# the worker). The worker stops cleanly on SIGINT, the server and moto on SIGTERM; whatever
# is left after 20 s is killed.
MOTO= SERVER= WORKER=
cleanup() {
  trap - EXIT INT TERM
  [ -n "$WORKER" ] && kill -INT -- "-$WORKER" 2>/dev/null
  [ -n "$SERVER" ] && kill -TERM -- "-$SERVER" 2>/dev/null
  [ -n "$MOTO" ] && kill -TERM -- "-$MOTO" 2>/dev/null
  for _ in $(seq 20); do
    alive=0
    for pgid in $WORKER $SERVER $MOTO; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pgid in $WORKER $SERVER $MOTO; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -f "$SETTINGS.before-serve" ]; then mv "$SETTINGS.before-serve" "$SETTINGS"; else rm -f "$SETTINGS"; fi
}
trap cleanup EXIT INT TERM

wait_http() {  # URL SECONDS NAME
  for _ in $(seq "$2"); do
    if "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "serve: $3 did not answer on $1 within $2 s; see $LOGS/" >&2
  exit 1
}

"$BIN/python" -m storage.moto --port "$S3_PORT" >"$LOGS/moto.log" 2>&1 &
MOTO=$!
"$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT" >"$LOGS/server.log" 2>&1 &
SERVER=$!
wait_http "http://127.0.0.1:${S3_PORT}/" 30 "moto S3"
wait_http "${PREFECT_API_URL}/health" 120 "the Prefect server"
# the bucket of the store, on serve's own S3 endpoint: `fmp stream create` works with no demo stream
"$BIN/python" -c "from flows._runtime import settings_for, store_for
getattr(store_for(settings_for()), 'ensure_bucket', lambda: None)()"

"$BIN/prefect" work-pool create fmp-process --type process --overwrite >"$LOGS/setup.log"
"$BIN/prefect" gcl inspect fmp-store-writer >/dev/null 2>&1 \
  || "$BIN/prefect" gcl create fmp-store-writer --limit 1 >>"$LOGS/setup.log"
# The runs the server's scheduler creates (discovery, feedback) carry their real names from the
# moment they exist, not Prefect's random ones until they start (flows/run_names.py);
# installed before the deployments, so their first scheduled runs are named too.
"$BIN/python" -m flows.run_names >>"$LOGS/setup.log" || true
"$BIN/prefect" --no-prompt deploy --all >>"$LOGS/setup.log"
# A run whose process dies (a killed worker, a killed fmp command) is marked Crashed by the server
# at most 130 s after it died (flows/zombies.py); the automation is created once, kept if it exists.
"$BIN/python" -m flows.zombies >>"$LOGS/setup.log"
for stream in $SERVE_STREAMS; do
  "$BIN/fmp" stream publish "$stream" --create-bucket
done

echo "serve: UI http://127.0.0.1:${PREFECT_PORT} — discovery starts a stream-batch run per new batch"
echo "serve: ledger ${FMP_HOME}/fmp.duckdb — try: $BIN/fmp ledger 'SELECT * FROM ledger_savings'"
"$BIN/prefect" worker start --pool fmp-process &
WORKER=$!
wait "$WORKER"
