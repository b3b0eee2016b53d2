"""What the training flow's branches hand each other: the data-specific first steps (table, series, images) hand a
`Prepared` to the shared teacher → soft labels → student → evaluate steps, which hand a `Distilled` to gate →
register → promote."""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from anomaly_distill import pipeline
from anomaly_distill.config import EngineConfig
from anomaly_distill.contract import AnyContract
from anomaly_distill.data import Table


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
