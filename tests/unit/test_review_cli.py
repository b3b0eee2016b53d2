"""`review` and `feedback` at the command line: bad input is one line and exit 2, an unreachable server exit 3, and
a review file handed back with some label cells still empty attaches the filled ones only."""

import socket

import pandas as pd
import pytest

from flows.cli import REVIEW_DEFAULT, REVIEW_STRATEGIES, main
from stores.live_store import LiveStore
from tasks.drift import feedback_store


def review(*extra):
    return main(["review", "--model-name", "fraud", *extra])


def test_the_command_line_offers_the_core_strategies_and_default():
    from anomaly_distill import review as core

    assert REVIEW_STRATEGIES == core.REVIEW_STRATEGIES and REVIEW_DEFAULT == core.DEFAULT_STRATEGY == "uncertain"


@pytest.mark.parametrize("k", ["0", "-3"])
def test_k_below_one_is_refused_before_anything_is_read(k, capsys):
    assert review("--k", k, "--live-store", "http://127.0.0.1:9/never-read") == 2
    assert capsys.readouterr().err.strip() == f"error: --k must be at least 1, got {k}"


def test_an_unknown_strategy_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        review("--strategy", "random")
    assert stop.value.code == 2 and "invalid choice: 'random'" in capsys.readouterr().err


def test_an_unknown_model_is_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["review", "--model-name", "nope", "--live-store", str(tmp_path / "store")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own lines on creating the store
    assert last == "error: model 'nope' has no version with alias 'champion'"


def test_an_unreachable_registry_is_exit_3_naming_it(monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # --tracking-uri sets it: put back after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{closed_port()}"
    assert review("--tracking-uri", uri) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: the MLflow model registry at {uri} did not answer") and err.count("\n") == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def store(tmp_path):
    """A live store with four scored rows (ids a..d)."""
    url = str(tmp_path / "store")
    LiveStore(url).append(pd.DataFrame({"f0": [0.1, 0.2, 0.3, 0.4], "score": [1.0, 2, 3, 4], "row_id": list("abcd")}))
    return url


def feedback(tmp_path, store, labels: list):
    path = tmp_path / "review.csv"
    pd.DataFrame({"row_id": list("abcd")[: len(labels)], "score": 1.0, "label": labels}).to_csv(path, index=False)
    return main(["feedback", "--data", str(path), "--live-store", store])


def test_feedback_attaches_the_filled_cells_and_leaves_the_empty_ones_out(tmp_path, store, capsys):
    assert feedback(tmp_path, store, [1, None, 0, None]) == 0
    assert "attached 2 labels (1 anomalies)" in capsys.readouterr().out
    stored = feedback_store(store).read()
    assert dict(zip(stored["row_id"], stored["label"])) == {"a": 1, "c": 0}


def test_feedback_with_every_cell_empty_attaches_nothing(tmp_path, store, capsys):
    assert feedback(tmp_path, store, [None, None]) == 0
    assert "attached 0 labels" in capsys.readouterr().out and feedback_store(store).read().empty


@pytest.mark.parametrize("bad", ["yes", 2])
def test_feedback_refuses_a_label_other_than_0_1_or_empty(tmp_path, store, bad, capsys):
    assert feedback(tmp_path, store, [1, bad, None]) == 2
    err = capsys.readouterr().err
    assert "must hold 0 (normal), 1 (anomaly) or an empty cell (not reviewed)" in err and err.count("\n") == 1
    assert feedback_store(store).read().empty
