"""Real Prefect (test harness: a temporary local API) and a real MLflow sqlite store in a temp dir."""
import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from tests.conftest import ADBENCH


@pytest.fixture(scope="session")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace(tmp_path, monkeypatch, prefect_api):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}):
        yield tmp_path


@pytest.fixture
def thyroid_csv(tmp_path):
    """ADBench thyroid from ../shared as a CSV with a label column."""
    import numpy as np
    import pandas as pd

    path = ADBENCH / "38_thyroid.npz"
    if not path.exists():
        pytest.skip("shared ADBench data not found")
    arrays = np.load(path)
    frame = pd.DataFrame(arrays["X"], columns=[f"f{i}" for i in range(arrays["X"].shape[1])])
    frame["label"] = arrays["y"].astype(int)
    out = tmp_path / "thyroid.csv"
    frame.to_csv(out, index=False)
    return out


LIVE_MODEL = "thyroid-live"


@pytest.fixture
def champion(workspace, thyroid_csv):
    """A registered champion trained on thyroid; returns the held-out rows (with labels) as "live" traffic."""
    from anomaly_distill import pipeline
    from anomaly_distill.config import EngineConfig
    from anomaly_distill.data import load_table
    from flows.training import TrainingParameters, training_pipeline

    training_pipeline(TrainingParameters(data_path=str(thyroid_csv), label_column="label", model_name=LIVE_MODEL,
                                         epochs=20))
    _, test = pipeline.split(load_table(thyroid_csv, "label"), EngineConfig())
    return test
