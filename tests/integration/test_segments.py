"""Per-segment models: one teacher + student per machine, one registered model that routes rows by segment."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from anomaly_distill.data import DataError
from flows.cli import main
from flows.scoring import ScoringParameters, run_batch_scoring
from flows.training import TrainingParameters, run_training
from tasks.tracking import tracking_uri

NAME = "per-machine"


@pytest.fixture
def machines_csv(thyroid_csv, workspace):
    """Two machines with different normal operating points: machine B runs thyroid's rows shifted and scaled, so
    a B-normal row would look anomalous to A's model and the other way round."""
    frame = pd.read_csv(thyroid_csv)
    features = [c for c in frame.columns if c != "label"]
    half = len(frame) // 2
    b = frame.iloc[half:].copy()
    b[features] = b[features] * 1.8 + 0.4
    out = pd.concat([frame.iloc[:half].assign(machine="A"), b.assign(machine="B")], ignore_index=True)
    path = workspace / "machines.csv"
    out.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def train(data, *extra, runner="threads"):
    argv = f"train --data {data} --label-column label --model-name {NAME} --segment-column machine".split()
    return main([*argv, "--task-runner", runner, *extra])


def train_flow(data):
    return run_training(
        TrainingParameters(data_path=str(data), label_column="label", model_name=NAME, segment_column="machine")
    )


def test_one_student_per_segment_and_unseen_segments_use_the_all_rows_model(workspace, machines_csv):
    assert train(machines_csv) == 0
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    student = model.unwrap_python_model().detector
    assert set(student.members) == {"A", "B", "*all*"}
    rows = pd.read_csv(machines_csv)
    scored = model.predict(rows.drop(columns=["label"]))
    assert roc_auc_score(rows["label"], scored["score"]) > 0.9
    by_segment = student.members["B"].score(rows.drop(columns=["label"]))
    assert not np.allclose(by_segment, scored["score"])  # A's rows were not scored by B's student
    unseen = rows.drop(columns=["label"]).head(50).assign(machine="Z")
    assert np.allclose(model.predict(unseen)["score"], student.members["*all*"].score(unseen))

    rows.drop(columns=["label"]).assign(machine="Z").to_csv(workspace / "new_machine.csv", index=False)
    assert main(["score", "--data", str(workspace / "new_machine.csv"), "--model-name", NAME]) == 0
    rows.drop(columns=["label", "machine"]).to_csv(workspace / "no_machine.csv", index=False)
    with pytest.raises(DataError, match=r"exactly the model's columns; missing \['machine'\]"):
        run_batch_scoring(
            ScoringParameters(data_path=str(workspace / "no_machine.csv"), model_uri=f"models:/{NAME}@champion")
        )


def test_missing_or_empty_segment_column_is_refused_before_anything_is_registered(workspace, machines_csv):
    rows = pd.read_csv(machines_csv)
    rows.drop(columns=["machine"]).to_csv(workspace / "none.csv", index=False)
    with pytest.raises(DataError, match="segment column 'machine' not found"):
        train_flow(workspace / "none.csv")
    rows.loc[3, "machine"] = None
    rows.to_csv(workspace / "holes.csv", index=False)
    with pytest.raises(DataError, match="'machine' has 1 empty values"):
        train_flow(workspace / "holes.csv")
    assert MlflowClient(tracking_uri(), tracking_uri()).search_model_versions(f"name='{NAME}'") == []


@pytest.mark.slow
def test_segments_train_in_parallel_on_a_two_worker_dask_cluster(workspace, machines_csv):
    assert train(machines_csv, runner="dask") == 0
    import mlflow.pyfunc

    student = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").unwrap_python_model().detector
    assert set(student.members) == {"A", "B", "*all*"}
