"""Feedback reaches the model through the nightly deployment: its parameters (live_window) train on the file plus
the model's live rows, with the labels people gave and empty cells for the rest, and its gate rests on labelled
held-out live rows. The first night (no live rows yet) trains on the file alone; a live store that does not
answer stops the run (exit 3). Real Prefect, MLflow sqlite store, live store on disk."""

import numpy as np
import pandas as pd
import pytest

import flows.tabular_training as tabular
from flows.cli import main
from flows.deployments import build
from flows.training import TrainingParameters, training_pipeline
from stores.live_store import LiveStore
from tasks.drift import feedback_labels, feedback_store

NAME = "nightly-demo"
FAST = {"distill": {"epochs": 20}}


@pytest.fixture
def files(workspace, thyroid_csv):
    """A partly labelled training file and the rest of the rows, as live traffic, with their true labels."""
    rows = pd.read_csv(thyroid_csv).sample(frac=1.0, random_state=0, ignore_index=True)
    train, live = rows.iloc[:2600].copy(), rows.iloc[2600:].reset_index(drop=True)
    train["label"] = train["label"].astype("Int8").mask(np.random.default_rng(0).random(len(train)) > 0.3)
    train.to_csv(workspace / "train.csv", index=False)
    live.drop(columns=["label"]).to_csv(workspace / "live.csv", index=False)
    return workspace / "train.csv", live["label"]


@pytest.fixture
def tables(monkeypatch) -> list[pd.DataFrame]:
    """Every table the training flow prepares (the file's rows, plus the live rows when they join)."""
    seen, prepare = [], tabular._prepare_table
    monkeypatch.setattr(
        tabular, "_prepare_table", lambda params, frame, run_id: seen.append(frame) or prepare(params, frame, run_id)
    )
    return seen


def nightly(train_csv, store) -> TrainingParameters:
    """The nightly-retrain deployment's parameters, as its cron run gets them (fewer epochs, this test's store)."""
    params = build(str(train_csv), NAME, "label")[0].parameters["params"]
    assert params["live_window"] == "7d"
    return TrainingParameters.model_validate({**params, "engine": FAST, "live_store": str(store)})


def give_feedback(workspace, truth: pd.Series, store) -> pd.Series:
    """A person labels the 20 highest-scored live rows and 20 others; returns row_id -> label given."""
    scored = pd.read_csv(workspace / "scored.csv").assign(truth=truth.to_numpy())
    top = scored.nlargest(20, "score")
    picked = pd.concat([top, scored.drop(top.index).sample(20, random_state=0)])
    picked[["row_id"]].assign(label=picked["truth"]).to_csv(workspace / "feedback.csv", index=False)
    assert main(["feedback", "--data", str(workspace / "feedback.csv"), "--live-store", str(store)]) == 0
    return picked.set_index("row_id")["truth"]


@pytest.mark.slow
def test_the_nightly_run_trains_on_live_rows_with_the_labels_people_gave(workspace, files, tables, capsys, caplog):
    train_csv, truth = files
    store = workspace / "store"
    assert (
        main(
            [
                "train",
                "--data",
                str(train_csv),
                "--label-column",
                "label",
                "--model-name",
                NAME,
                "--config",
                str(write_fast(workspace)),
            ]
        )
        == 0
    )

    first = training_pipeline(nightly(train_csv, store))  # first night: nothing scored yet
    assert "_live_row" not in tables[-1] and len(tables[-1]) == 2600 and first["version"]
    assert f"no live rows of {NAME} in the last 7d in the live store at {store}" in caplog.text

    score = ["score", "--data", str(workspace / "live.csv"), "--model-name", NAME, "--live-store", str(store)]
    assert main([*score, "--out", str(workspace / "scored.csv")]) == 0
    given = give_feedback(workspace, truth, store)

    outcome = training_pipeline(nightly(train_csv, store))
    table = tables[-1]
    live_part = table[table["_live_row"] == 1].reset_index(drop=True)
    rows = LiveStore(str(store)).read()
    expected = feedback_labels(rows, feedback_store(str(store)).read())
    assert len(live_part) == len(rows) == len(truth)
    np.testing.assert_array_equal(live_part["label"].to_numpy(), expected.to_numpy())
    assert live_part["label"].notna().sum() == len(given) == 40
    assert (rows.loc[expected.notna(), "row_id"].map(given) == expected.dropna()).all()
    file_part = table[table["_live_row"] == 0]
    assert len(file_part) == 2600 and 0 < file_part["label"].notna().mean() < 1

    reasons = " ".join(outcome["reasons"])
    held_out = int(reasons.split("measured on the held-out rows (")[1].split(" labelled of")[0])
    assert 2 <= held_out <= 40  # labelled live rows, held out: the file's rows train
    assert "live rows of the last 7d (40 labelled through feedback" in caplog.text


@pytest.mark.slow
def test_a_live_store_that_does_not_answer_stops_the_nightly_run(workspace, files, capsys):
    train_csv, _ = files
    args = ["train", "--data", str(train_csv), "--model-name", NAME, "--config", str(write_fast(workspace))]
    assert main([*args, "--live-window", "7d", "--live-store", "http://127.0.0.1:9/live"]) == 3
    assert "error: the live store at http://127.0.0.1:9/live did not answer" in capsys.readouterr().err


def write_fast(workspace):
    path = workspace / "fast.json"
    path.write_text('{"engine": {"distill": {"epochs": 20}}}')
    return path
