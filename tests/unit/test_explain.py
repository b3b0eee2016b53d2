"""Per-alert explanations (anomaly_distill/tabular/explain.py): integrated gradients of the student's score."""

import numpy as np
import pandas as pd
import pytest
import torch

from anomaly_distill.data import fit_preprocessor
from anomaly_distill.models.student import ScoringModel, StudentNet
from anomaly_distill.tabular.explain import explain_rows, integrated_gradients, top_features, typical_row
from anomaly_distill.tabular.pipeline import Student


@pytest.fixture
def model() -> ScoringModel:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, 4)) * [1, 10, 0.1, 1], columns=["a", "b", "c", "d"])
    frame["const"] = 3.0  # dropped by the preprocessor: the student never sees it
    return ScoringModel.from_preprocessor(fit_preprocessor(frame), StudentNet(4, [16, 8], 3.0)).eval()


def test_attributions_add_up_to_the_rise_of_the_score_over_the_typical_row(model):
    rows = (np.random.default_rng(1).normal(size=(50, 5)) * [1, 10, 0.1, 1, 0] + [0, 0, 0, 0, 3]).astype(np.float32)
    attributions = integrated_gradients(model, rows, steps=64)
    with torch.no_grad():
        rise = model(torch.as_tensor(rows)) - model(typical_row(model)[None])
    np.testing.assert_allclose(attributions.sum(axis=1), rise.numpy(), atol=2e-3)


def test_a_column_at_its_median_or_ignored_by_the_student_explains_nothing(model):
    row = typical_row(model).numpy().copy()
    row[0] += 5.0  # only column "a" moves
    row[4] = 1e6  # "const" was dropped: whatever it holds cannot matter
    attributions = integrated_gradients(model, row[None])[0]
    assert attributions[0] != 0 and np.all(attributions[1:] == 0)


def test_top_features_names_only_columns_that_raise_the_score():
    attributions = np.array([[0.5, -2.0, 1.25, 0.0], [-1.0, -0.5, -0.1, -3.0]])
    assert top_features(attributions, ["a", "b", "c", "d"], 2) == ["c (+1.25); a (+0.5)", ""]
    assert top_features(attributions, ["a", "b", "c", "d"], 1) == ["c (+1.25)", ""]


def test_only_flagged_rows_are_explained(model):
    rows = np.zeros((4, 5), dtype=np.float32)
    texts = explain_rows(model, rows + [[9, 0, 0, 0, 0]], np.array([True, False, True, False]), 3)
    assert texts[1] == texts[3] == "" and all(isinstance(t, str) for t in texts)
    student = Student(model, threshold=-1e9)  # every row flagged
    frame = pd.DataFrame(rows, columns=["a", "b", "c", "d", "const"])
    scored = student.predict(frame, explain=2)
    assert list(scored.columns) == ["score", "is_anomaly", "explanation"]
    assert "explanation" not in student.predict(frame).columns


def test_asking_a_model_without_explanations_for_them_is_an_error():
    from types import SimpleNamespace

    from anomaly_distill.detector import predict
    from anomaly_distill.errors import DataError

    series = SimpleNamespace(kind="timeseries", explains=False, predict=lambda frame, threshold: frame)
    assert predict(series, "rows") == "rows"  # no explanation asked: scored as always
    with pytest.raises(DataError, match="explanations are available for tabular models; this is a timeseries model"):
        predict(series, "rows", explain=3)


def test_every_detector_kind_says_whether_it_explains():
    import importlib

    from anomaly_distill.detector import LOADERS

    explains = {}
    for kind, loader in LOADERS.items():
        module, _, attribute = loader.partition(":")
        owner = getattr(importlib.import_module(module), attribute.split(".")[0])
        explains[kind] = getattr(owner, "explains", None)
    explains["tabular"] = importlib.import_module("anomaly_distill.tabular.tabular_student").Student.explains
    assert explains == {
        "tabular": True,
        "timeseries": False,
        "segmented": False,
        "online_series": False,
        "image": False,
    }
