#!/usr/bin/env bash
# Screenshot an experiment's runs in the MLflow UI, to see what a user sees there: the runs table (its Dataset and
# Source columns) and one trial run's page (who created it, its source, git commit, dataset, checkpoint tag; the
# table's User and Version columns are hidden until chosen under "Columns"). Not part of CI: it needs Debian's
# `chromium` package (apt-get install -y chromium) and under a minute.
#
#   scripts/screenshot_runs.sh [STORE] [EXPERIMENT] [PNG]
#     STORE       a SQLite tracking store (default ./mlflow.db)
#     EXPERIMENT  the experiment to show (default grokbench/xor_tiny)
#     PNG         where to save the runs table (default ./runs.png); the run's page goes beside it (runs-run.png)
#
# It starts a lean `mlflow server` (one worker, no job runner) on a free port of 127.0.0.1 over the store, in a
# scratch directory so that nothing lands in the working directory, opens the pages in headless Chromium, saves
# the PNGs, and stops the server.
set -euo pipefail

store=$(realpath "${1:-mlflow.db}")
experiment=${2:-grokbench/xor_tiny}
png=$(realpath -m "${3:-runs.png}")
[[ -f $store ]] || { echo "screenshot_runs: no store at $store" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || { echo "screenshot_runs: no chromium; apt-get install -y chromium" >&2; exit 2; }

scratch=$(mktemp -d)
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
(cd "$scratch" && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec mlflow server --workers 1 --host 127.0.0.1 \
    --port "$port" --backend-store-uri "sqlite:///$store" >"$scratch/server.log" 2>&1) &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$scratch"' EXIT

for _ in $(seq 90); do
    curl -fs "$base/health" >/dev/null && break
    sleep 1
done
curl -fs "$base/health" >/dev/null || { echo "screenshot_runs: the server did not start:" >&2; cat "$scratch/server.log" >&2; exit 1; }

id=$(curl -fsG "$base/api/2.0/mlflow/experiments/get-by-name" --data-urlencode "experiment_name=$experiment" |
     python -c 'import json, sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])') ||
    { echo "screenshot_runs: no experiment $experiment in $store" >&2; exit 2; }

run=$(curl -fs -X POST "$base/api/2.0/mlflow/runs/search" -H "Content-Type: application/json" \
          -d "{\"experiment_ids\": [\"$id\"], \"max_results\": 100}" |
      python -c 'import json, sys
runs = json.load(sys.stdin).get("runs", [])
trials = [r for r in runs if any(t["key"] == "grokbench.trial_key" for t in r["data"].get("tags", []))]
print(trials[0]["info"]["run_id"] if trials else "")')

shoot() {  # URL PNG; the virtual time budget lets the page load before the shot
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2400,900 \
        --virtual-time-budget=20000 --user-data-dir="$scratch/profile" --screenshot="$2" "$1" \
        >>"$scratch/browser.log" 2>&1
    echo "saved $2"
}
# the runs table, not the MLflow 3 GenAI overview
shoot "$base/#/experiments/$id/runs?workflowType=machine_learning" "$png"
[[ -z $run ]] || shoot "$base/#/experiments/$id/runs/$run?workflowType=machine_learning" "${png%.png}-run.png"
