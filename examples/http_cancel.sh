#!/usr/bin/env bash
# Cancel a run over HTTP, with curl only: start a streamed run in the background, read its run id
# from the first frame (RunStarted), cancel it, then show the end of the stream and the run record.
#
#   npm start                      # in another terminal: the server on http://127.0.0.1:7777
#   bash examples/http_cancel.sh
#
# Environment: RUNSTATE_URL (default http://127.0.0.1:$PORT, PORT as npm start takes it, default 7777), AGENT (default story-writer-agent),
# CANCEL_AFTER seconds of streaming before the cancel (default 1), RUNSTATE_SECURITY_KEY if the
# server asks for a bearer token.
set -euo pipefail

BASE="${RUNSTATE_URL:-http://127.0.0.1:${PORT:-7777}}"
AGENT="${AGENT:-story-writer-agent}"
AUTH=()
if [[ -n "${RUNSTATE_SECURITY_KEY:-}" ]]; then AUTH=(-H "Authorization: Bearer ${RUNSTATE_SECURITY_KEY}"); fi
# ${AUTH[@]+"${AUTH[@]}"}: a plain "${AUTH[@]}" fails under `set -u` on bash < 4.4 when it is empty.

if ! curl -sf "$BASE/health" > /dev/null; then
  echo "no runstate server at $BASE: start one with 'npm start' (or set RUNSTATE_URL, or PORT)" >&2
  exit 1
fi

STREAM="$(mktemp)"
CURL_PID=""
cleanup() {
  if [[ -n "$CURL_PID" ]]; then kill "$CURL_PID" 2> /dev/null || true; fi
  rm -f "$STREAM"
}
trap cleanup EXIT

# 1. A streamed run, as Agno's clients start one: multipart/form-data. -N: no buffering.
curl -sN ${AUTH[@]+"${AUTH[@]}"} "$BASE/agents/$AGENT/runs" \
  -F 'message=Write a long story about a lighthouse keeper' > "$STREAM" &
CURL_PID=$!

# 2. The first frame is RunStarted; its JSON carries the run id.
RUN_ID=""
for _ in $(seq 100); do
  RUN_ID="$(grep -om1 '"run_id":"[^"]*' "$STREAM" | cut -d'"' -f4 || true)"
  [[ -n "$RUN_ID" ]] && break
  sleep 0.1
done
if [[ -z "$RUN_ID" ]]; then
  echo "no RunStarted frame came; the stream said:" >&2
  cat "$STREAM" >&2
  exit 1
fi
echo "run $RUN_ID started"
sleep "${CANCEL_AFTER:-1}"
echo "frames streamed before the cancel: $(grep -c '^event: ' "$STREAM" || true)"

# 3. Cancel: 200 {"run_id", "status":"cancelled"} (409 if it had finished otherwise, 404 if unknown).
echo "POST .../runs/$RUN_ID/cancel →"
curl -s -X POST ${AUTH[@]+"${AUTH[@]}"} "$BASE/agents/$AGENT/runs/$RUN_ID/cancel"
echo

# 4. The stream ends by itself after its terminal frame, RunCancelled (reason "api").
wait "$CURL_PID" || true
CURL_PID=""
echo "last frame of the stream:"
tail -n 4 "$STREAM" | grep -E '^(id|event):' || true
tail -n 4 "$STREAM" | grep -o '"reason":"[a-z_]*","status":"[a-z]*"' || true

# 5. The run record: status, cancel_reason, the partial content, metrics.
echo "GET .../runs/$RUN_ID →"
curl -s ${AUTH[@]+"${AUTH[@]}"} "$BASE/agents/$AGENT/runs/$RUN_ID"
echo
