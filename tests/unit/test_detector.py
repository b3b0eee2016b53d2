"""The Detector contract for every kind: save/load round trip, and an ONNX export that scores what the detector
scores (raw rows, a raw history, routed segments), on real data; what has no ONNX form is refused whole."""

import numpy as np
import pandas as pd
import pytest

from anomaly_distill.config import DistillConfig, EngineConfig, SeriesConfig, TeacherConfig
from anomaly_distill.contract import ImageContract, SeriesContract, TabularContract
from anomaly_distill.data import table_from_frame
from anomaly_distill.detector import (
    Detector,
    ExportError,
    check_contract_fits,
    load_detector,
    save_detector,
    size_bytes,
)
from anomaly_distill.export import OnnxDetector
from anomaly_distill.series.series_pipeline import train_series
from anomaly_distill.series.timeseries import read_series
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.segments import Segmented, segment_tables
from tests.conftest import DEMO, NAB, require

FAST = EngineConfig(distill=DistillConfig(epochs=15, min_rows=3000), teacher=TeacherConfig(epochs=10))
PARITY = {"rtol": 1e-5, "atol": 1e-5}


def table_detector(table):
    train, test = pipeline.split(table, FAST)
    _, student = pipeline.train_segment(train, FAST)
    return student, test


@pytest.fixture(scope="module")
def tabular(thyroid):
    return table_detector(thyroid)


@pytest.fixture(scope="module")
def segmented():
    """The demo set with a machine column: three segments of ~1,250 rows, one model each plus the all-rows one."""
    frame = pd.read_csv(DEMO).assign(machine=lambda f: np.array(["m1", "m2", "m3"])[np.arange(len(f)) % 3])
    train, test = pipeline.split(table_from_frame(frame, "label", "machine"), FAST)
    members = {name: pipeline.train_segment(rows, FAST)[1] for name, rows in segment_tables(train, 500).items()}
    return Segmented("machine", members), test.scoring_frame()


@pytest.fixture(scope="module")
def series_detector():
    path = NAB / "realKnownCause" / "machine_temperature_system_failure.csv"
    require(path.exists(), f"shared NAB data not found at {NAB}")
    config = SeriesConfig(teacher="ensemble", distill_rows=5000, timestamp_policy="file_order")
    series = read_series(path, "timestamp", config.window, timestamp_policy="file_order")
    fit = train_series(series, config, FAST)
    history = pd.DataFrame({"timestamp": series.timestamps, "value": series.values["value"]}).iloc[-3000:]
    return fit.student, history.reset_index(drop=True)


@pytest.mark.parametrize("kind", ["tabular", "segmented", "series_detector"])
def test_export_scores_what_the_detector_scores(kind, request, tmp_path):
    detector, rows = request.getfixturevalue(kind)
    assert isinstance(detector, Detector) and detector.onnx_name and detector.history
    exported = OnnxDetector(detector.export_onnx(tmp_path / detector.onnx_name))
    expected = detector.score(rows if kind != "tabular" else rows.features)
    got = exported.score(rows if kind != "tabular" else rows.features)
    assert len(got) == len(expected) and np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, **PARITY)


def test_series_export_takes_raw_values_and_does_the_windowing(series_detector, tmp_path):
    detector, history = series_detector
    exported = OnnxDetector(detector.export_onnx(tmp_path / "series.onnx"))
    assert len(exported.score(history)) == len(history) - detector.window + 1
    scaled = history.assign(value=history["value"] * 10)  # normalisation happens inside the graph
    np.testing.assert_allclose(exported.score(scaled), detector.score(scaled), **PARITY)


def test_segmented_export_carries_every_member_and_routes_unseen_segments(segmented, tmp_path):
    detector, rows = segmented
    folder = detector.export_onnx(tmp_path / "segmented")
    manifest = OnnxDetector(folder).manifest
    assert set(manifest["members"]) == set(detector.members) and manifest["segment_column"] == "machine"
    unseen = rows.assign(machine="m9")
    np.testing.assert_allclose(OnnxDetector(folder).score(unseen), detector.fallback.score(unseen), **PARITY)
    assert detector.n_params == sum(m.n_params for m in detector.members.values())


@pytest.mark.parametrize("kind", ["tabular", "segmented"])
def test_saved_state_loads_back_to_the_same_scores(kind, request, tmp_path):
    detector, rows = request.getfixturevalue(kind)
    frame = rows.features if kind == "tabular" else rows
    loaded = load_detector(save_detector(detector, tmp_path / "detector.pt"))
    assert loaded.kind == detector.kind and size_bytes(detector) == (tmp_path / "detector.pt").stat().st_size
    np.testing.assert_array_equal(loaded.score(frame), detector.score(frame))


def test_what_has_no_onnx_form_is_refused_and_nothing_is_written(tmp_path, thyroid, tabular):
    train, _ = pipeline.split(thyroid, FAST)
    teacher = pipeline.train_teacher(train, FAST)  # PyOD detectors: no ONNX form
    mixed = Segmented("machine", {"*all*": tabular[0], "m1": teacher})
    with pytest.raises(ExportError, match=r"segments \['m1'\] hold TrainedTeacher"):
        mixed.export_onnx(tmp_path / "mixed")
    assert list(tmp_path.iterdir()) == []


def test_every_detector_kind_names_the_contract_it_scores(tabular, segmented, series_detector):
    from anomaly_distill.image.image_pipeline import ImageDetector
    from anomaly_distill.series.online import OnlineSeriesModel

    contract_kinds = {c.model_fields["kind"].default for c in (TabularContract, SeriesContract, ImageContract)}
    classes = [type(tabular[0]), type(segmented[0]), type(series_detector[0]), OnlineSeriesModel, ImageDetector]
    assert {cls.kind: cls.contract_kind for cls in classes} == {
        "tabular": "tabular",
        "segmented": "tabular",
        "timeseries": "timeseries",
        "online_series": "timeseries",
        "image": "image",
    }
    assert {cls.contract_kind for cls in classes} == contract_kinds


def test_a_model_is_not_registered_beside_another_kind_of_contract(tabular, series_detector):
    tabular_contract = TabularContract(features=list(tabular[1].features.columns))
    check_contract_fits(tabular[0], tabular_contract)
    with pytest.raises(ValueError, match="a timeseries model scores timeseries input, not a tabular contract"):
        check_contract_fits(series_detector[0], tabular_contract)
