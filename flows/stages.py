"""What the training flow's branches share and hand each other: the data-specific first steps (table, series,
images: flows/tabular_training.py, series_training.py, image_training.py) hand a `Prepared` to the shared teacher →
soft labels → student → evaluate steps (`distill`), which hand a `Distilled` to gate → register → promote."""

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from anomaly_distill.config import EngineConfig
from anomaly_distill.contract import AnyContract
from anomaly_distill.data import Table
from anomaly_distill.series import series_pipeline
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.compress import hidden_widths
from tasks import common, evaluation, fitting


@dataclass
class Prepared:
    """What the data-specific first steps hand to the shared teacher → soft labels → student → evaluate steps.

    A series arrives here as a table of window rows: its teacher candidates carry the window shape and the
    window synthesizer in their engine config, and `wrap` puts the normaliser and window around the student."""

    contract: AnyContract
    digest: str  # of the data and of how it was turned into rows: part of the teacher's cache key
    train: Table
    test: Table
    candidates: dict[str, EngineConfig]  # teacher kind -> the engine settings it is trained with
    wrap: Callable[[pipeline.Student], object]  # student over rows -> the shippable detector
    gate_rows: object  # held-out input (with labels) the champion is scored on too (Table, or SeriesGateRows)
    example: Callable[[object], pd.DataFrame]  # input example of the logged model
    reference: Callable[[object], pd.DataFrame]  # drift reference: training rows as the detector scores them
    validation: Table | None = None  # picks the teacher when there are several candidates
    test_stamps: object = None  # series: timestamps of the test rows (event metrics)


@dataclass
class Distilled:
    """What the shared steps hand to gate → register → promote."""

    student: object
    metrics: dict
    student_run: str
    teacher_cached: bool = False


class Stopwatch(dict):
    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self[stage] = time.perf_counter() - start


def distill(params, prepared: Prepared, run_id: str, runs: list, clock: "Stopwatch") -> Distilled:
    """Teacher(s) → the chosen one → soft labels → student → detector → held-out evaluation (or per segment)."""
    train = prepared.train
    teacher_run, student_run = common.start_child_runs(run_id, "teacher", "student")
    runs += [teacher_run, student_run]
    if params.segment_column:
        config = params.engine
        with clock("train_per_segment"):
            trained, student = fitting.train_per_segment(train, config, params.min_segment_rows)
        common.record_run(run_id, params={"segments": ",".join(student.members)})
        cached, kind, why = False, config.teacher.kind, "per segment"
    else:
        with clock("train_teacher"):  # submitted: the candidates run on the task runner side by side
            futures = {
                kind: fitting.train_teacher.submit(train, config, prepared.digest)
                for kind, config in prepared.candidates.items()
            }
            teachers = {kind: future.result() for kind, future in futures.items()}
            cached = all(future.state.name == "Cached" for future in futures.values())
        kind, why = series_pipeline.choose_teacher(teachers, prepared.validation)
        trained, config = teachers[kind], prepared.candidates[kind]
        fitting.log_teacher(teacher_run, trained, config, cached)
        with clock("generate_soft_labels"):
            soft_labels = fitting.generate_soft_labels(trained, train, config, prepared.digest)
        fitting.log_soft_labels(student_run, soft_labels)
        with clock("distill_student"):
            rows_student = fitting.distill_student(soft_labels, trained, train, config)
        student = prepared.wrap(rows_student)
    common.record_run(run_id, tags={"teacher_kind": kind, "teacher_choice": why})
    fitting.log_student(student_run, student, config)
    with clock("evaluate"):
        row_scorer = student if params.segment_column else rows_student
        metrics = evaluation.evaluate(
            row_scorer, trained, prepared.test, [run_id, student_run], student, prepared.test_stamps
        )
    return Distilled(student, metrics, student_run, cached)


def engine_student_facts(params, student) -> tuple[dict, float]:
    """The model card's student facts (and the contamination) for an engine-trained student: tables and series."""
    net = getattr(getattr(student, "model", None), "net", None)  # a per-segment or series model: configured widths
    hidden = hidden_widths(net) if net is not None else params.engine.student.hidden  # pruning narrows the student
    return {"hidden": hidden, "distill": params.engine.distill.model_dump(mode="json")}, params.engine.contamination
