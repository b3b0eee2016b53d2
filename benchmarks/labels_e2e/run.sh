#!/usr/bin/env bash
# Issue 31 end to end, as a user (make labels-e2e; output in benchmarks/labels_e2e/output.txt): partly labelled file -> train -> serve-api -> review -> feedback -> nightly retrain.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd); A=$ROOT/.venv/bin/anomaly-distill; PY=$ROOT/.venv/bin/python
W=${1:-/tmp/e2e-labels}; rm -rf "$W"; mkdir -p "$W"; cd "$W"  # the work folder: wiped first
export CARDIO=$ROOT/../shared/data/adbench/6_cardio.npz MLFLOW_TRACKING_URI=sqlite:///$W/mlflow.db ANOMALY_DISTILL_LIVE_STORE=$W/live-store
t() { local s=$(date +%s.%N); "$@"; printf "[wall %.1f s: %s]\n" "$(echo "$(date +%s.%N) - $s" | bc)" "${*:1:3}"; }
$PY - <<'PY'
import numpy as np, pandas as pd
d = np.load(__import__("os").environ["CARDIO"]); X, y = d["X"], d["y"].astype(int)
rng = np.random.default_rng(0); order = rng.permutation(len(X)); train, live = order[:1300], order[1300:]
frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
labels = pd.Series(y[train], dtype="Float64")
keep = np.zeros(len(train), bool); anomalies = np.flatnonzero(y[train] == 1)
keep[rng.choice(anomalies, max(1, len(anomalies) // 20), replace=False)] = True  # 5 % of the anomalies reviewed
keep[rng.choice(np.flatnonzero(y[train] == 0), 20, replace=False)] = True           # and 20 normal rows
frame.iloc[train].assign(label=labels.where(keep).to_numpy()).to_csv("train.csv", index=False)
frame.iloc[live].to_csv("live.csv", index=False); pd.Series(y[live]).to_csv("live_truth.csv", index=False)
print(f"train.csv: {len(train)} rows, {keep.sum()} labelled ({(y[train][keep]==1).sum()} anomalies); live.csv: {len(live)} rows")
PY
t $A train --data train.csv --label-column label --model-name cardio-e2e 2>/dev/null | grep -v "^MLflow UI"
$A serve-api --model-name cardio-e2e --port 8931 > serve.log 2>&1 & SERVE=$!
trap 'kill $SERVE 2>/dev/null' EXIT
for i in $(seq 60); do curl -fs http://127.0.0.1:8931/health >/dev/null && break; sleep 1; done
t $PY - <<'PY'
import json, urllib.request, pandas as pd
rows = pd.read_csv("live.csv"); ids = []
for start in range(0, len(rows), 200):
    body = json.dumps(rows.iloc[start:start + 200].to_dict("records")).encode()
    request = urllib.request.Request("http://127.0.0.1:8931/score", body, {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request)); ids += answer["row_ids"]
pd.Series(ids).to_csv("row_ids.csv", index=False)
print(f"served {len(ids)} live rows through /score")
PY
kill $SERVE; wait $SERVE 2>/dev/null || true
# One review round: the queue by STRATEGY, answered by the person (an oracle here, from the truth), handed back.
review_round() {  # STRATEGY K SHOWN_LINES
  t $A review --model-name cardio-e2e --k "$2" --strategy "$1" --csv "review-$1.csv" 2>/dev/null > "review-$1.txt"
  head -"$3" "review-$1.txt"
  $PY - "review-$1.csv" <<'PY'
import sys, pandas as pd
truth = dict(zip(pd.read_csv("row_ids.csv").iloc[:, 0].astype(str), pd.read_csv("live_truth.csv").iloc[:, 0]))
review = pd.read_csv(sys.argv[1], dtype={"row_id": str}); review["label"] = review["row_id"].map(truth)
review.to_csv(sys.argv[1], index=False)
print(f"{sys.argv[1]}: {len(review)} rows, {int(review['label'].sum())} anomalies (precision {review['label'].mean():.2f})")
PY
  t $A feedback --data "review-$1.csv" 2>/dev/null
}
review_round top 20 30        # the alerts: all anomalies on cardio
review_round uncertain 40 1   # nearest the threshold: mostly normal, the other class the gate needs
t $A train --data train.csv --label-column label --model-name cardio-e2e --live-window 7d 2>/dev/null | grep -v "^MLflow UI"
