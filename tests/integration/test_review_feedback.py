"""Labels people give reach the model: train on a partly labelled file, score live rows, `review` the rows most
worth a look, label them in the review file, hand it back with `feedback`, and the drift retrain trains and is
gated on those labels (real Prefect, MLflow sqlite store, live store on disk)."""

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from stores.live_store import LiveStore
from tasks.drift import feedback_labels, feedback_store
from tasks.tracking import tracking_uri

NAME = "review-demo"
FAST = '{"engine": {"distill": {"epochs": 20}}}'
LABELLED_SHARE = 0.3  # of the training rows; the others' label cells are empty (not reviewed)


@pytest.fixture
def partly_labelled(workspace, thyroid_csv):
    """Training file (most label cells blanked) and the live rows with their true labels, kept apart."""
    rows = pd.read_csv(thyroid_csv).sample(frac=1.0, random_state=0, ignore_index=True)
    train, live = rows.iloc[:2600].copy(), rows.iloc[2600:].reset_index(drop=True)
    blank = np.random.default_rng(0).random(len(train)) > LABELLED_SHARE
    train["label"] = train["label"].astype("Int8").mask(blank)
    train.to_csv(workspace / "train.csv", index=False)
    (workspace / "fast.json").write_text(FAST)
    return workspace / "train.csv", live


def scored_live(workspace, live: pd.DataFrame) -> pd.Series:
    """Live rows, shifted in two columns (drift), scored into the store; returns each row_id's true label."""
    shifted = live.drop(columns=["label"]).assign(f1=live["f1"] * 3 + 0.05, f4=live["f4"] + 0.3)
    shifted.to_csv(workspace / "live.csv", index=False)
    out = workspace / "scored.csv"
    assert main(["score", "--data", str(workspace / "live.csv"), "--model-name", NAME, *store(workspace)]) == 0
    return pd.Series(live["label"].to_numpy(), index=pd.read_csv(out)["row_id"])


def store(workspace) -> list[str]:
    return ["--live-store", str(workspace / "store"), "--out", str(workspace / "scored.csv")]


def review_and_label(workspace, truth: pd.Series, strategy: str, k: int, capsys) -> pd.DataFrame:
    """`review --csv`, then a person fills the label cells from the truth, all but the last two, and hands it back."""
    path = workspace / f"review-{strategy}.csv"
    args = ["review", "--model-name", NAME, "--k", str(k), "--strategy", strategy, "--csv", str(path)]
    assert main([*args, "--live-store", str(workspace / "store")]) == 0
    printed = capsys.readouterr().out
    handed_out = pd.read_csv(path)
    assert list(handed_out.columns) == ["row_id", "score", "is_anomaly", "explanation", "label"]
    assert len(handed_out) == k and handed_out["label"].isna().all()
    assert all(row_id in printed for row_id in handed_out["row_id"]) and "uncertain (default)" in printed
    filled = handed_out.assign(label=truth[handed_out["row_id"]].to_numpy().astype(float))
    filled.loc[filled.index[-2:], "label"] = np.nan  # not reviewed yet
    filled.to_csv(path, index=False)
    assert main(["feedback", "--data", str(path), "--live-store", str(workspace / "store")]) == 0
    assert f"attached {k - 2} labels" in capsys.readouterr().out
    return filled


@pytest.mark.slow
def test_reviewed_labels_reach_the_retraining_table_and_the_gate(workspace, partly_labelled, capsys):
    train_csv, live = partly_labelled
    train = ["train", "--data", str(train_csv), "--label-column", "label", "--model-name", NAME]
    assert main([*train, "--config", str(workspace / "fast.json")]) == 0
    truth = scored_live(workspace, live)

    top = review_and_label(workspace, truth, "top", 40, capsys)
    assert top["score"].is_monotonic_decreasing and top["explanation"].fillna("").ne("").all()
    uncertain = review_and_label(workspace, truth, "uncertain", 40, capsys)
    assert not set(top["row_id"][:-2]) & set(uncertain["row_id"])  # a labelled row is not offered again

    summary = drift_and_retrain(workspace)
    table = pd.read_parquet(summary["retrain_parameters"]["data_path"])
    rows = LiveStore(str(workspace / "store")).read()
    given = feedback_labels(rows, feedback_store(str(workspace / "store")).read())
    live_part = table[table["_live_row"] == 1].reset_index(drop=True)
    assert live_part["label"].notna().sum() == given.notna().sum() == 2 * (40 - 2)
    np.testing.assert_array_equal(live_part["label"].to_numpy(), given.to_numpy())
    reference_part = table[table["_live_row"] == 0]
    assert 0 < reference_part["label"].notna().mean() < 1  # the champion's partly labelled training rows

    gate_reasons = verdict_of(summary["retrain"]["version"])
    held_out = int(gate_reasons.split("measured on the held-out rows (")[1].split(" labelled of")[0])
    assert 2 <= held_out <= 2 * (40 - 2)  # rests on live rows a person labelled, not on the reference snapshot
    assert "reference snapshot" not in gate_reasons


def drift_and_retrain(workspace) -> dict:
    out = workspace / "drift.json"
    args = ["drift", "--model-name", NAME, "--live-store", str(workspace / "store"), "--json", str(out)]
    assert main([*args, "--retrain-on-drift"]) == 0
    summary = json.loads(out.read_text())
    assert summary["drift_detected"] and summary["retrain"]["version"] == "2"
    assert summary["retrain_parameters"]["label_column"] == "label"
    return summary


def verdict_of(version: str) -> str:
    return MlflowClient(tracking_uri(), tracking_uri()).get_model_version(NAME, version).tags["gate_reasons"]


@pytest.mark.slow
def test_review_of_an_empty_or_unreachable_store_says_so(workspace, partly_labelled, capsys):
    train_csv, _ = partly_labelled
    args = ["--data", str(train_csv), "--model-name", NAME, "--config", str(workspace / "fast.json")]
    assert main(["train", *args]) == 0
    capsys.readouterr()
    review = ["review", "--model-name", NAME, "--live-store"]
    assert main([*review, str(workspace / "empty")]) == 2
    assert f"error: no live rows of {NAME} in the live store at {workspace / 'empty'}" in capsys.readouterr().err
    assert main([*review, "http://127.0.0.1:9/live"]) == 3
    assert "error: the live store at http://127.0.0.1:9/live could not be read" in capsys.readouterr().err
