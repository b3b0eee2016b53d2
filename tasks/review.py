"""The review queue: the live rows of a model that nobody has labelled yet, chosen for a person's look, with the
champion's score, flag and explanation. What the person labels goes back through `feedback`, and from there into
the next retraining table (flows/drift.py)."""

import numpy as np
import pandas as pd

from anomaly_distill.data import DataError
from anomaly_distill.review import review_queue
from anomaly_distill.tabular.explain import EXPLANATION
from stores.live_store import ROW_ID
from stores.registry import ModelRef, load_contract, resolve_model
from tasks import drift as d
from tasks.live_rows import reading_store
from tasks.scoring import load_pyfunc

QUEUE_COLUMNS = [ROW_ID, "score", "is_anomaly", EXPLANATION]
ALL_TIME = "36500d"  # no --window: every row the store holds
STRATEGY_NOTES = {
    "uncertain": "the scores nearest the alarm threshold: what the model learns most from (in make "
    "bench-labels-quick's feedback loop, test AUPRC x1.86 after 5 rounds, against x1.40 for top)",
    "top": "the highest scores: the alerts a team reviews anyway, the most anomalies per look (about 4 in 10 "
    "there), but they teach the model least: it ranked them high already",
}


def review_queue_rows(
    model_name: str, k: int, strategy: str, live_url: str, window: str | None = None, explain: int = 3
) -> tuple[pd.DataFrame, dict]:
    """The k unlabelled live rows of `model_name` most worth a look by `strategy`, scored and explained by its
    champion (rows another version scored are re-scored by it, as drift does), and what they were chosen from."""
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    model = resolve_model(f"models:/{model_name}@champion")
    contract = load_contract(model.run_id)
    rows, reviewed = unreviewed_rows(live_url, model, contract, window)
    detector = load_pyfunc(model.uri).unwrap_python_model().detector
    picked = review_queue(rows["score"].to_numpy(), float(detector.threshold), k, strategy, reviewed)
    queue = rows.iloc[np.asarray(picked, dtype=int)].reset_index(drop=True)
    queue[EXPLANATION] = explanations(detector, contract, queue, explain)
    facts = {"version": model.version, "rows": len(rows), "reviewed": int(reviewed.sum())}
    return queue[QUEUE_COLUMNS], facts


def unreviewed_rows(live_url: str, model: ModelRef, contract, window: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The model's live rows (every score the champion's) and which of them already carry a person's label."""
    with reading_store(live_url):
        rows, _ = d.load_window.fn(live_url, model, contract, window or ALL_TIME)
        feedback = d.feedback_store(live_url).read()
    if rows.empty:
        raise DataError(f"no live rows of {model.name} in the live store at {live_url}: nothing to review")
    labels = d.feedback_labels(rows, feedback)
    return rows, labels.isin([0, 1]).to_numpy()


def explanations(detector, contract, queue: pd.DataFrame, explain: int) -> list[str]:
    """Why each queued row scores as it does (its `explain` columns that raise the score most), flagged or not: a
    row near the threshold needs its reason as much as an alert. Tabular students only; "" for other models."""
    if not detector.explains or explain < 1 or queue.empty:
        return [""] * len(queue)
    explained = detector.predict(queue[contract.input_columns], float("-inf"), explain=explain)
    return explained[EXPLANATION].tolist()


def review_file(queue: pd.DataFrame) -> pd.DataFrame:
    """The queue as a person fills it in: an empty `label` column (1 = anomaly, 0 = normal, empty = not reviewed)."""
    return queue.assign(**{d.LABEL: ""})
