"""training-pipeline's settings: one pydantic tree that the Prefect form, the `train` command's flags (flows/flags.py),
its YAML file and the deployments all read. Light on purpose (pydantic and the engine's config only): the CLI
imports it at start-up. What a run does with each modality's settings is in that modality's module
(flows/tabular_training.py, series_training.py, image_training.py)."""

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from anomaly_distill.config import (
    SERIES_OWNS,
    EngineConfig,
    GateConfig,
    ImageConfig,
    OptionalText,
    SeriesConfig,
    StrictModel,
)
from flows.runners import RunnerKind

TABLE_ONLY = ("segment_column", "min_segment_rows", "holdout_column", "live_window", "live_store")  # read by tables


class TabularInput(StrictModel):
    model_config = ConfigDict(title="Tabular")

    kind: Literal["tabular"] = Field("tabular", description="One row per event; every column but the label a feature.")
    labels_path: ClassVar[None] = None
    takes_live_rows: ClassVar[bool] = True
    compresses: ClassVar[bool] = True

    def unused_settings(self) -> tuple[str, ...]:
        """Settings its runs never read (not logged as their parameters)."""
        return ()

    def unused_engine_settings(self, changed: list[str]) -> dict[str, str]:
        return {}

    def labels_source(self, params) -> str | None:
        return params.label_column and f"column `{params.label_column}`"


class SeriesInput(StrictModel):
    model_config = ConfigDict(title="Time series")

    kind: Literal["timeseries"] = Field("timeseries", description="A timestamp column plus value columns.")
    timestamp_column: str = Field("timestamp", description="The timestamp column.")
    labels_path: OptionalText = Field(
        None, description="NAB-style label-window JSON (evaluation and teacher choice); empty: none."
    )
    series: SeriesConfig = Field(default_factory=SeriesConfig, description="Windows and splits.")

    takes_live_rows: ClassVar[bool] = False
    compresses: ClassVar[bool] = False

    def unused_engine_settings(self, changed: list[str]) -> dict[str, str]:
        if self.series.mode == "online":
            return {path: "timeseries runs read their own settings (series.online)" for path in changed}
        owner = dict(SERIES_OWNS)
        return {path: f"a series takes it from series.{owner[path]}" for path in changed if path in owner}

    def unused_settings(self) -> tuple[str, ...]:
        online_only = ("engine", "task_runner", "dask_address") if self.series.mode == "online" else ()
        return TABLE_ONLY + ("max_rows_in_memory", "check_ranges") + online_only  # online: its own settings

    def labels_source(self, params) -> str | None:
        if self.labels_path:
            return f"label windows from `{self.labels_path}`"
        return params.label_column and f"column `{params.label_column}`"


class ImageInput(StrictModel):
    model_config = ConfigDict(title="Images")

    kind: Literal["image"] = Field(
        "image", description="A folder (good/ = normal, other subfolders = defects) or a CSV manifest path,label."
    )
    # The default is written into the schema too: the Prefect form picks the branch a value shares most keys with,
    # and a bare {"kind": "image"} would be shown (and kept) as Tabular.
    image: ImageConfig = Field(
        default_factory=ImageConfig,
        description="Image size, teacher, student.",
        json_schema_extra=lambda schema: schema.update(default=ImageConfig().model_dump(mode="json")),
    )

    labels_path: ClassVar[None] = None
    takes_live_rows: ClassVar[bool] = False
    compresses: ClassVar[bool] = False

    def unused_settings(self) -> tuple[str, ...]:
        engine_side = ("engine", "label_column", "max_rows_in_memory", "check_ranges", "task_runner", "dask_address")
        return TABLE_ONLY + engine_side

    def unused_engine_settings(self, changed: list[str]) -> dict[str, str]:
        return {path: "image runs read their own settings (image)" for path in changed}

    def labels_source(self, params) -> str | None:
        return "folders: good/ normal, the others defects (evaluation only: training sees normal images)"


# Where the files are or how the run is spread does not change the model (the label file's content does, apart)
KEY_EXCLUDES = {
    "task_runner": True,
    "dask_address": True,
    "data_path": True,
    "live_store": True,
    "modality": {"labels_path"},
}
SERIES_KEYS = ("timestamp_column", "labels_path", "series")
INPUTS = {cls.model_fields["kind"].default: cls for cls in (TabularInput, SeriesInput, ImageInput)}


class TrainingParameters(StrictModel):
    data_path: str = Field("data/demo/thyroid.csv", description="CSV, Parquet or .npz file with the training table.")
    label_column: OptionalText = Field(
        "label", description="Column with 1 = anomaly, 0 = normal. Leave empty for unlabelled data."
    )
    model_name: str = Field("anomaly-detector", description="Registered model name in the MLflow registry.")
    experiment: str = Field("anomaly-distill", description="MLflow experiment for the runs.")
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="The distillation engine: teacher, student, loss, seed, "
        "contamination (the same settings `anomaly-distill benchmark --config` takes).",
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="Promotion gate thresholds.")
    task_runner: RunnerKind = Field(
        "threads", description="threads: this machine; dask: teacher ensemble members spread over a Dask cluster."
    )
    dask_address: OptionalText = Field(None, description="Dask scheduler (tcp://host:8786); empty: a local cluster.")
    segment_column: OptionalText = Field(
        None, description="Train one student per value of this column (merchant, machine, …); empty: one model."
    )
    min_segment_rows: int = Field(
        500, ge=20, description="Segments with fewer training rows are scored by the model trained on all rows."
    )
    modality: TabularInput | SeriesInput | ImageInput = Field(
        default_factory=TabularInput,
        description="Tabular rows, or a time series (a timestamp column plus value columns, scored by sliding "
        "windows) with its settings.",
    )
    holdout_column: OptionalText = Field(
        None,
        description="Rows with 1 in this column are the only candidates for the held-out rows (the rest always "
        "train). Drift retraining marks the live rows: the gate never scores the champion on its training rows.",
    )
    check_ranges: bool = Field(
        True, description="Check value ranges against the champion's data contract (drift retraining turns it off)."
    )
    max_rows_in_memory: int = Field(
        500_000,
        ge=1_000,
        description="A file with more rows streams past once (whole-file checks for missing, infinite and text "
        "cells, and its digest), and a uniform random sample of this many rows trains and evaluates.",
    )
    live_window: OptionalText = Field(
        None,
        description="Also train on this model's live rows of this far back (7d, 12h) with the labels people gave "
        "through feedback (the rest not reviewed); the gate's held-out rows come from them, range checks are off. "
        "The nightly deployment sets it. Empty: the file alone. Tabular models.",
    )
    live_store: OptionalText = Field(
        None, description="Live store URL for live_window (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_modality(cls, data):
        """Still accepted: `modality: timeseries` with `timestamp_column`, `labels_path`, `series` beside it."""
        if not isinstance(data, dict) or not (isinstance(data.get("modality"), str) or set(SERIES_KEYS) & set(data)):
            return data
        flat = {key: data[key] for key in SERIES_KEYS if key in data}
        kind = data.get("modality", TabularInput.model_fields["kind"].default)
        takes = INPUTS[kind].model_fields if isinstance(kind, str) and kind in INPUTS else {}
        if not isinstance(kind, str) or not set(flat) <= set(takes):
            raise ValueError(f"{', '.join(flat)}: time-series settings; they need `modality: timeseries`")
        rest = {key: value for key, value in data.items() if key not in SERIES_KEYS}
        return {**rest, "modality": {"kind": kind, **flat}}

    @field_validator("live_window")
    @classmethod
    def _window_is_a_duration(cls, value: str | None) -> str | None:
        if value is not None and not _positive_duration(value):
            raise ValueError(f"{value!r} is not a positive duration such as 7d, 12h or 30min")
        return value

    @model_validator(mode="after")
    def _live_rows_are_tabular(self):
        if self.live_window and (not self.modality.takes_live_rows or self.holdout_column):
            raise ValueError(
                "live_window: live rows join a tabular training table, and they are its held-out rows "
                "(not with a time series, images or a holdout_column)"
            )
        return self

    @model_validator(mode="after")
    def _compression_is_tabular(self):
        if not self.modality.compresses and self.engine.student.compress != "none":
            kind = type(self.modality).model_config["title"].lower()
            raise ValueError(f"engine.student.compress: compression is available for tabular models, not {kind}")
        return self

    @model_validator(mode="after")
    def _one_home_per_setting(self):
        """An engine setting this run would not read is refused, not silently dropped: images and online series
        have their own settings; a frozen series takes some engine settings from its series settings."""
        unused = self.modality.unused_engine_settings(changed_engine_settings(self.engine))
        if unused:
            listed = "; ".join(f"engine.{path}: {why}" for path, why in sorted(unused.items()))
            raise ValueError(f"settings this run would not use (remove them or set their own): {listed}")
        return self

    def applied_settings(self) -> dict:
        """The settings this run's modality uses, as the run's MLflow parameters (an image run has no engine)."""
        return self.model_dump(exclude=set(self.modality.unused_settings()))


def _positive_duration(value: str) -> bool:
    import pandas as pd  # start-up time: the CLI builds its `train` flags from this module without pandas

    try:
        return pd.Timedelta(value) > pd.Timedelta(0)
    except ValueError:
        return False


def changed_engine_settings(engine: EngineConfig) -> list[str]:
    """Dotted paths of the engine settings that differ from their defaults."""

    def leaves(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    given, default = leaves(engine.model_dump(mode="json")), leaves(EngineConfig().model_dump(mode="json"))
    return [path for path, value in given.items() if default.get(path) != value]
