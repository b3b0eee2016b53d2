"""Time series through the same training flow: GX series contract, windows, teacher choice, student,
registered pyfunc that scores a recent history frame; bad series input registers nothing."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from anomaly_distill.data import DataError
from flows.cli import main
from flows.training import TrainingParameters, run_training
from tasks.tracking import tracking_uri
from tests.conftest import NAB, require

SERIES = NAB / "realKnownCause" / "rogue_agent_key_hold.csv"
LABELS = NAB / "labels" / "combined_windows.json"
NAME = "series-test"


@pytest.fixture(autouse=True)
def nab_series():
    require(SERIES.exists(), f"shared NAB data not found at {NAB}")


def client():
    return MlflowClient(tracking_uri(), tracking_uri())


def quick_settings(folder) -> str:
    """Fewer distillation rows and epochs than the defaults: what is under test here is the flow, not the fit."""
    path = folder / "quick.yaml"
    path.write_text("series: {distill_rows: 5000}\nengine: {distill: {epochs: 40}, teacher: {epochs: 15}}\n")
    return str(path)


def test_series_trains_through_the_flow_and_the_model_scores_a_history_frame(workspace):
    assert (
        main(
            [
                "train",
                "--modality",
                "timeseries",
                "--data",
                str(SERIES),
                "--timestamp-column",
                "timestamp",
                "--labels",
                str(LABELS),
                "--model-name",
                NAME,
                "--config",
                quick_settings(workspace),
            ]
        )
        == 0
    )
    version = client().get_model_version(NAME, "1")
    run = client().get_run(version.run_id)
    assert {"auroc", "auprc", "event_recall", "false_alarms_per_day", "fidelity", "teacher_auroc"} <= set(
        run.data.metrics
    )
    parent = run  # the model hangs on the parent run
    assert parent.data.tags["teacher_kind"] in {"ensemble", "conv_autoencoder"}
    assert "validation AUROC" in parent.data.tags["teacher_choice"]
    card, params = version.description, parent.data.params  # the card says what the run's parameters say
    assert (
        f"window: {params['modality.series.window']} points" in card
        and "- teacher: " + parent.data.tags["teacher_kind"] in card
    )
    assert f"- digest: `{params['data_digest']}`" in card and not any(k.startswith("segment_") for k in params)

    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    recent = pd.read_csv(SERIES).tail(100)
    scored = model.predict(recent)
    assert list(scored.columns) == ["timestamp", "score", "is_anomaly"] and len(scored) == 100 - 31
    assert scored["timestamp"].iloc[-1] == pd.Timestamp(recent["timestamp"].iloc[-1])
    # online: a point's score depends only on the window ending at it
    assert np.allclose(model.predict(recent.tail(40))["score"], scored["score"].tail(9))


def _bad(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "unsorted":
        return frame.iloc[[*range(0, 300), 301, 300, *range(302, len(frame))]]
    if kind == "duplicate":
        return frame.assign(timestamp=frame["timestamp"].where(frame.index != 50, frame["timestamp"][49]))
    if kind == "non-numeric":
        return frame.assign(value=frame["value"].astype(object).where(frame.index != 7, "broken"))
    return frame.head(20)  # too short for one window


@pytest.mark.parametrize(
    "kind, message",
    [
        ("unsorted", "expect_column_values_to_be_increasing"),
        ("duplicate", "expect_column_values_to_be_unique"),
        ("non-numeric", "expect_column_values_to_be_in_type_list(column='value')"),
        ("too-short", "expect_table_row_count_to_be_between(min_value=32): observed 20"),
    ],
)
def test_bad_series_input_is_refused_and_registers_nothing(workspace, kind, message):
    path = workspace / f"{kind}.csv"
    _bad(pd.read_csv(SERIES), kind).to_csv(path, index=False)
    params = TrainingParameters(data_path=str(path), modality="timeseries", model_name=NAME, label_column=None)
    with pytest.raises(DataError) as error:
        run_training(params)
    assert message in str(error.value)
    assert ("timestamp_policy: file_order" in str(error.value)) == (kind in ("unsorted", "duplicate"))
    assert client().search_model_versions(f"name='{NAME}'") == []


def test_series_model_in_batch_scoring_the_service_and_drift_monitoring(workspace):
    """Chunked batch scoring (windows overlap across chunks), the HTTP service with a history payload, and the
    drift monitor comparing live values and scores with the training period."""
    from fastapi.testclient import TestClient

    from flows.drift import DriftParameters, drift_monitoring
    from flows.scoring import ScoringParameters, run_batch_scoring
    from serving.app import create_app

    quick = quick_settings(workspace)
    assert (
        main(["train", "--modality", "timeseries", "--data", str(SERIES), "--model-name", NAME, "--config", quick]) == 0
    )
    frame = pd.read_csv(SERIES)
    recent = frame.tail(400).reset_index(drop=True)
    recent.to_csv(workspace / "recent.csv", index=False)
    uri = f"models:/{NAME}@champion"
    whole = run_batch_scoring(
        ScoringParameters(
            data_path=str(workspace / "recent.csv"),
            model_uri=uri,
            out_path=str(workspace / "whole.csv"),
            live_store=str(workspace / "a"),
        )
    )
    run_batch_scoring(
        ScoringParameters(
            data_path=str(workspace / "recent.csv"),
            model_uri=uri,
            chunk_rows=50,
            out_path=str(workspace / "chunked.csv"),
            live_store=str(workspace / "b"),
        )
    )
    assert whole["rows"] == 400 - 31
    one, chunked = pd.read_csv(workspace / "whole.csv"), pd.read_csv(workspace / "chunked.csv")
    # the same scores: float32 matrix products over batches of other sizes may round differently, hence 1e-4
    np.testing.assert_allclose(one["score"], chunked["score"], rtol=1e-4, atol=1e-6)
    assert (one["timestamp"] == chunked["timestamp"]).all()

    with TestClient(create_app(NAME, live_store=str(workspace / "service"), poll_seconds=0)) as http:
        answer = http.post("/score", json=recent.tail(40).to_dict(orient="records")).json()
        assert len(answer["scores"]) == 9 and answer["scored_from_record"] == 31
        assert np.allclose(answer["scores"], one["score"].tail(9))
        unsorted = recent.tail(40).iloc[::-1].to_dict(orient="records")
        refused = http.post("/score", json=unsorted)
        assert refused.status_code == 422 and "not sorted" in refused.json()["detail"]

    # live traffic like the training period: no drift; the same traffic shifted: the value column drifts
    like_training = frame.iloc[100:600].reset_index(drop=True)
    like_training.to_csv(workspace / "calm.csv", index=False)
    run_batch_scoring(
        ScoringParameters(data_path=str(workspace / "calm.csv"), model_uri=uri, live_store=str(workspace / "d"))
    )
    calm = drift_monitoring(DriftParameters(model_name=NAME, live_store=str(workspace / "d")))
    assert calm["drifted_columns"] == [] and "value" in calm["columns"]
    step = pd.Timedelta(pd.to_datetime(frame["timestamp"]).diff().median())
    later = pd.date_range(pd.Timestamp(frame["timestamp"].iloc[-1]) + step, periods=len(like_training), freq=step)
    shifted = like_training.assign(timestamp=later.astype(str), value=like_training["value"] * 5 + 1)
    shifted.to_csv(workspace / "shifted.csv", index=False)
    run_batch_scoring(
        ScoringParameters(data_path=str(workspace / "shifted.csv"), model_uri=uri, live_store=str(workspace / "c"))
    )
    stormy = drift_monitoring(DriftParameters(model_name=NAME, live_store=str(workspace / "c")))
    assert stormy["drift_detected"] and stormy["drifted_columns"] == ["value"]

    # retrain on drift: the champion's training period + the live points, in time order, as a new series version
    retrained = drift_monitoring(
        DriftParameters(
            model_name=NAME,
            live_store=str(workspace / "c"),
            retrain_on_drift=True,
            retrain_dir=str(workspace / "retraining"),
        )
    )
    assert retrained["drift_detected"] and retrained["retrain"]["version"] == "2"
    table = pd.read_parquet(sorted((workspace / "retraining").glob("*.parquet"))[-1])
    stamps = pd.to_datetime(table["timestamp"])
    assert list(table.columns) == ["timestamp", "value"] and stamps.is_monotonic_increasing and stamps.is_unique
    live_points = shifted.iloc[31:]  # the first window-1 points have no score and are not stored
    assert len(table) == stormy["reference_rows"] + len(live_points)
    np.testing.assert_allclose(table["value"].tail(len(live_points)), live_points["value"])
    import mlflow

    assert len(mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(recent)) == 400 - 31  # a series model again
