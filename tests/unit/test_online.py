"""The online series detector: causal, exact across restarts and splits, adapts to a lasting change."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from anomaly_distill.config import OnlineConfig
from anomaly_distill.data import DataError
from anomaly_distill.series.online import (
    KnnTeacher,
    OnlineSeriesDetector,
    PrototypeStudent,
    RangeCheck,
    RankCalibrator,
    kmeans,
    synthetic_windows,
)

QUICK = OnlineConfig(reference=120, refresh_every=60, calibration=500, student_epochs=30)  # prototypes, 3 views
BEFORE = {"student": "mlp", "frame": "student"}
MLP_ONE_VIEW = QUICK.model_copy(update={"coarse_scales": [], **BEFORE})  # the default of before
MLP_VIEWS = QUICK.model_copy(update=BEFORE)
CONFIGS, CONFIG_IDS = [QUICK, MLP_ONE_VIEW, MLP_VIEWS], ["prototypes, coarse views", "mlp, one view", "mlp, views"]


def noisy(n: int, seed: int = 0, level: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + np.sin(np.arange(n) / 8) + 0.1 * rng.normal(size=n)


def test_scores_lie_in_unit_interval_and_warmup_scores_zero():
    scores = OnlineSeriesDetector(QUICK).score(noisy(600))
    assert scores.shape == (600,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (scores[: QUICK.warmup] == 0).all()


def test_a_point_is_scored_from_its_past_only():
    past = noisy(500)
    one = np.r_[past, noisy(200, seed=1)]
    other = np.r_[past, noisy(200, seed=2, level=5.0)]
    a, b = OnlineSeriesDetector(QUICK).score(one), OnlineSeriesDetector(QUICK).score(other)
    np.testing.assert_array_equal(a[:500], b[:500])
    assert not np.array_equal(a[500:], b[500:])


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("cut", [1, 37, 60, 333, 1203])
def test_state_saved_anywhere_goes_on_as_an_uninterrupted_replay(cut, config):
    values = noisy(1600)
    whole = OnlineSeriesDetector(config).score(values)
    first = OnlineSeriesDetector(config)
    head = first.score(values[:cut])
    restored = OnlineSeriesDetector.from_state(json.loads(json.dumps(first.state())))
    np.testing.assert_allclose(np.r_[head, restored.score(values[cut:])], whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_point_by_point_equals_one_call(config):
    values = noisy(1300)
    detector = OnlineSeriesDetector(config)
    singles = np.array([detector.score([v])[0] for v in values])
    np.testing.assert_allclose(singles, OnlineSeriesDetector(config).score(values), rtol=0, atol=1e-12)


def test_a_state_saved_before_coarse_views_prototypes_and_frames_goes_on_as_it_was_trained():
    values = noisy(900)
    first = OnlineSeriesDetector(MLP_ONE_VIEW)
    head = first.score(values[:500])
    saved = first.state()
    for key in ("coarse", "blocks"):
        del saved[key]
    for key in ("coarse_scales", "student", "prototypes", "frame", "coarse_residual_prototypes"):
        del saved["config"][key]
    restored = OnlineSeriesDetector.from_state(saved)
    assert restored.coarse == [] and restored.config.student == "mlp" and restored.config.frame == "student"
    np.testing.assert_array_equal(
        np.r_[head, restored.score(values[500:])], OnlineSeriesDetector(MLP_ONE_VIEW).score(values)
    )


def test_a_state_saved_before_the_coarse_views_had_residual_prototypes_goes_on_without_them():
    values, before = noisy(2400), QUICK.model_copy(update={"coarse_residual_prototypes": 0})
    first = OnlineSeriesDetector(before)
    head = first.score(values[:1500])
    saved = json.loads(json.dumps(first.state()))
    del saved["config"]["coarse_residual_prototypes"]
    for view in saved["coarse"]:
        del view["config"]["coarse_residual_prototypes"]
    restored = OnlineSeriesDetector.from_state(saved)
    tail = restored.score(values[1500:])
    assert restored.config.coarse_residual_prototypes == 0
    assert all(len(view.student.centres) == QUICK.prototypes for view in restored.coarse)  # re-distilled without
    np.testing.assert_array_equal(np.r_[head, tail], OnlineSeriesDetector(before).score(values))


def test_only_the_coarser_views_add_residual_prototypes():
    detector = OnlineSeriesDetector(QUICK)
    detector.score(noisy(2400))
    assert len(detector.student.centres) == QUICK.prototypes  # the main view: residual_prototypes 0
    assert [view.config.residual_prototypes for view in detector.coarse] == [16, 16]
    assert all(QUICK.prototypes < len(view.student.centres) <= QUICK.prototypes + 16 for view in detector.coarse)


def test_coarse_views_see_more_of_a_slow_drift_without_more_false_alarms():
    """A ramp of 4 noise scales over 400 points: each 16-point window barely moves, means of 4 and 16 points do."""
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(size=3000), rng.normal(size=400) + np.linspace(0, 4, 400)]
    rest0 = {"rest": 0, "range_history": 0, "range_margin": 10.0}
    one, three = (OnlineSeriesDetector(c.model_copy(update=rest0)).score(values) for c in (MLP_ONE_VIEW, MLP_VIEWS))
    alarms = {
        name: ((s[1000:3000] >= 0.99).mean(), (s[3000:] >= 0.99).mean()) for name, s in [("one", one), ("three", three)]
    }
    assert max(alarms["one"][0], alarms["three"][0]) < 0.015  # the noise: ~1 % rank above 0.99 either way
    assert alarms["three"][1] >= 1.5 * alarms["one"][1]


@pytest.mark.parametrize("frame", ["teacher", "student"])
def test_scores_are_read_against_the_teachers_leave_one_out_scores_or_the_students_own(frame):
    detector = OnlineSeriesDetector(QUICK.model_copy(update={"frame": frame, "coarse_scales": []}))
    detector.score(noisy(400))
    reference = detector.teacher.reference  # the last refresh's
    own = (
        detector.teacher.score(reference, leave_one_out=True)
        if frame == "teacher"
        else detector.student.score(reference)
    )
    q1, median, q3 = np.percentile(own, [25, 50, 75])
    assert (detector.offset, detector.spread) == pytest.approx((median, q3 - q1), abs=1e-12)


def test_coarse_scales_are_checked():
    with pytest.raises(ValidationError, match="coarse_scales"):
        OnlineConfig(coarse_scales=[4, 4])
    with pytest.raises(ValidationError, match="coarse_scales"):
        OnlineConfig(coarse_scales=[1])


def test_a_constant_sensor_is_a_stream_and_a_change_from_it_alarms():
    values = np.r_[np.full(400, 3.0), [3.5], np.full(100, 3.0)]
    scores = OnlineSeriesDetector(QUICK).score(values)
    assert scores[:400].max() < 0.6  # a flat stretch ranks mid-way among its equals
    assert scores[400] >= QUICK.alarm_level


@pytest.mark.parametrize("update", [{"scorer": "student"}, {"scorer": "teacher"}, {"student": "prototypes"}])
def test_a_lasting_level_shift_alarms_then_is_absorbed(update):
    values = np.r_[noisy(1500), noisy(1500, seed=3, level=6.0)]
    scores = OnlineSeriesDetector(QUICK.model_copy(update={"rest": 0, **update})).score(values)
    assert scores[1500] >= QUICK.alarm_level
    before, after = ((part >= QUICK.alarm_level).mean() for part in (scores[500:1500], scores[2000:]))
    assert after <= 2 * before + 0.01  # back to the base rate (a rank calibration puts ~1 % above 0.99)


def test_mlp_student_is_tiny_and_follows_its_teacher():
    detector = OnlineSeriesDetector(MLP_ONE_VIEW)
    detector.score(noisy(400))
    rows = synthetic_windows(detector.teacher.reference, np.random.default_rng(1))
    agreement = np.corrcoef(detector.student.score(rows), detector.teacher.score(rows))[0, 1]
    assert detector.student.n_params == QUICK.window * QUICK.student_hidden + 2 * QUICK.student_hidden + 1
    assert agreement > 0.5


def test_prototype_student_is_tiny_in_every_view():
    detector = OnlineSeriesDetector(QUICK)
    detector.score(noisy(2000))
    per_prototype = QUICK.window + 1  # a window of 16 values and its offset
    main, most = QUICK.prototypes * per_prototype, (QUICK.prototypes + QUICK.coarse_residual_prototypes) * per_prototype
    coarse = [view.student.n_params for view in detector.coarse]
    assert detector.student.n_params == main and all(main < n <= most for n in coarse)  # + residual prototypes
    assert detector.n_params == main + sum(coarse)
    assert detector.student.n_params < detector.teacher.reference.size / 3


def test_prototype_student_follows_its_teacher_closer_than_the_mlp():
    """The prototype student keeps the teacher's shape (a distance to normal windows): on windows unlike the
    reference as well as like it, its scores rank as the teacher's do, more closely than the network's."""
    agreement = {}
    for student in ("mlp", "prototypes"):
        detector = OnlineSeriesDetector(QUICK.model_copy(update={"student": student}))
        detector.score(noisy(400))
        rows = synthetic_windows(detector.teacher.reference, np.random.default_rng(1))
        agreement[student] = np.corrcoef(detector.student.score(rows), detector.teacher.score(rows))[0, 1]
    assert agreement["prototypes"] > 0.9
    assert agreement["prototypes"] > agreement["mlp"]


def test_prototype_student_golden_values():
    student = PrototypeStudent(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([0.0, 1.0]))
    rows = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    # nearest after offsets: centre 0 at 0; centre 1 at 5 - 1 = 4 (never below 0); min(10, 5 - 1) = 4
    np.testing.assert_allclose(student.score(rows), np.log1p([0.0, 0.0, 4.0]), atol=1e-7)
    assert student.n_params == 6


def test_prototype_offsets_match_the_teacher_inside_the_reference():
    rng = np.random.default_rng(0)
    reference = np.r_[rng.normal(size=(100, 3)) * 0.1, 5 + rng.normal(size=(100, 3)) * 0.1]
    targets = KnnTeacher(reference, 5).score(reference, leave_one_out=True)
    student = PrototypeStudent.distil(reference, targets, prototypes=2, seed=0)
    unfitted = PrototypeStudent(student.centres, np.zeros(2))
    error = {s: np.median(np.abs(s.score(reference) - targets)) for s in (student, unfitted)}
    assert error[student] < 0.5 * error[unfitted]  # 0.029 against 0.078
    far = np.full((1, 3), 20.0)
    assert student.score(far)[0] == pytest.approx(KnnTeacher(reference, 5).score(far)[0], abs=0.1)


def test_residual_prototypes_cover_a_rare_normal_shape_the_centres_miss():
    """Two k-means centres for three groups of windows (one with 5 windows only): the rare group lies between
    centres, so the student scores it far above the teacher; one residual prototype at it closes that gap."""
    rng = np.random.default_rng(0)
    groups = [np.zeros(3), np.full(3, 5.0), np.array([0.0, 5.0, 10.0])]
    reference = np.concatenate([c + rng.normal(size=(n, 3)) * 0.1 for c, n in zip(groups, (100, 100, 5))])
    targets = KnnTeacher(reference, 1).score(reference, leave_one_out=True)
    plain = PrototypeStudent.distil(reference, targets, prototypes=2, seed=0)
    covered = PrototypeStudent.distil(reference, targets, prototypes=2, seed=0, residuals=1)
    rare = slice(200, 205)
    assert (plain.score(reference[rare]) - targets[rare]).min() > 1.0
    assert np.abs(covered.score(reference[rare]) - targets[rare]).max() < 0.3
    np.testing.assert_array_equal(covered.centres[:2], plain.centres)  # the k-means centres are kept as they were
    assert len(covered.centres) == 3 and covered.n_params == plain.n_params + 4


def test_kmeans_is_seeded_and_keeps_k_centres():
    rows = np.random.default_rng(0).normal(size=(50, 4))
    first, again = (kmeans(rows, 6, np.random.default_rng(3)) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (6, 4)


def test_knn_teacher_golden_values():
    reference = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    teacher = KnnTeacher(reference, neighbours=1)
    np.testing.assert_allclose(teacher.score(np.array([[0.0, 0.0], [3.0, 4.0]])), np.log1p([0.0, 0.0]), atol=1e-7)
    np.testing.assert_allclose(teacher.score(reference, leave_one_out=True), np.log1p([5.0, 5.0, 5.0]), atol=1e-7)


def test_rank_calibrator_ranks_among_the_trailing_scores_only():
    calibrator = RankCalibrator(20)
    for raw in range(30):
        calibrator.add(float(raw))
    assert calibrator.sorted == [float(v) for v in range(10, 30)]
    assert calibrator(19.5) == pytest.approx(10 / 21)
    assert calibrator(20.0) == pytest.approx(10.5 / 21)  # a tie counts half
    assert 1 - 1 / 21 < calibrator(100.0) < 1


def test_range_check_forgets_values_older_than_its_history():
    check = RangeCheck(size=3, margin=0.0)
    for i, value in enumerate([10.0, 0.0, 1.0, 2.0]):
        check.add(i, value)
    assert check(2.5) > 0.99  # past the range of the last three (0, 1, 2); 10 is forgotten
    assert check(1.5) == 0.0


def test_warmup_must_hold_a_window():
    with pytest.raises(ValidationError, match="warmup"):
        OnlineConfig(window=64, warmup=50)
    with pytest.raises(ValidationError, match="extra"):
        OnlineConfig(windw=8)


def test_student_gradients_match_torch_autograd():
    import torch

    from anomaly_distill.series.online import TinyStudent

    rng = np.random.default_rng(0)
    rows, targets = rng.normal(size=(50, 6)), rng.normal(size=50)
    params = [rng.normal(size=(6, 4)), rng.normal(size=4), rng.normal(size=4), np.array(0.3)]
    ours = TinyStudent._gradients(params, rows, targets)
    w1, b1, w2, b2 = (torch.tensor(p, requires_grad=True) for p in params)
    x, y = torch.tensor(rows), torch.tensor(targets)
    ((torch.relu(x @ w1 + b1) @ w2 + b2 - y) ** 2).mean().backward()
    for mine, theirs in zip(ours, (w1, b1, w2, b2)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_distillation_fits_a_target_it_can_represent():
    from anomaly_distill.series.online import TinyStudent

    rows = np.random.default_rng(1).normal(size=(400, 4))
    targets = np.maximum(rows[:, 0], 0.0) + 0.5 * rows[:, 1]
    student = TinyStudent.distil(rows, targets, hidden=16, epochs=400, seed=0)
    assert np.mean((student.score(rows) - targets) ** 2) < 0.01 * targets.var()


def served_model(n=500):
    import pandas as pd

    from anomaly_distill.series.online import OnlineSeriesModel

    frame = pd.DataFrame({"timestamp": pd.date_range("2030", periods=n, freq="5min").astype(str), "v": noisy(n)})
    return OnlineSeriesModel.warm(frame, "timestamp", ["v"], QUICK)[0]


def test_two_workers_on_one_state_file_never_diverge(tmp_path):
    """Two stores on one file (two worker processes) take turns on a series: each goes on from the other's
    state, so the scores are those of one uninterrupted replay."""
    from datetime import datetime, timedelta, timezone

    from stores.series_state import SeriesStateStore

    model = served_model()
    values = noisy(200, seed=5)[:, None]
    stamps = [datetime(2031, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=5 * i) for i in range(200)]
    workers = [SeriesStateStore(tmp_path / "state.sqlite") for _ in range(2)]
    taken = []
    for i in range(0, 200, 7):  # uneven turns
        taken += list(workers[(i // 7) % 2].advance(model, "m", "1", "s", stamps[i : i + 7], values[i : i + 7], "")[1])
    np.testing.assert_allclose(taken, model.advance(None, values)[1], atol=1e-12)
    with pytest.raises(DataError, match="send each point once"):
        workers[0].advance(model, "m", "1", "s", stamps[-1:], values[-1:], str(stamps[-1]))
    assert workers[1].summary("m") == [
        {"version": "1", "series": "s", "last_timestamp": stamps[-1].isoformat(), "points": 200}
    ]


def test_an_online_model_saves_and_loads_but_has_no_graph(tmp_path):
    from anomaly_distill.detector import Detector, ExportError, load_detector, save_detector

    model = served_model()
    loaded = load_detector(save_detector(model, tmp_path / "detector.pt"))
    values = noisy(50, seed=9)[:, None]
    np.testing.assert_array_equal(loaded.advance(None, values)[1], model.advance(None, values)[1])
    np.testing.assert_array_equal(model.score_rows(values), model.advance(None, values)[1])
    assert isinstance(model, Detector) and model.onnx_name is None and model.history == []
    with pytest.raises(ExportError, match="no fixed graph"):
        model.export_onnx(tmp_path / "x.onnx")
