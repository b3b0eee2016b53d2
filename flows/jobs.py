"""One short form per job in the Prefect UI: train-table, train-series and train-images.

Each flow takes only what its kind of data needs: the data, the label, the model's name first, and every engine
setting folded into one `advanced` section with its defaults. It builds the full `TrainingParameters` and runs
the one training pipeline (flows/training.py) in its own flow run. The nightly-retrain deployment keeps the full
form: a drift event hands it every setting of the run it asks for."""

from prefect import flow
from pydantic import ConfigDict, Field

from anomaly_distill.config import EngineConfig, GateConfig, ImageConfig, OptionalText, SeriesConfig, StrictModel
from flows.runners import RunnerKind
from flows.training import training_pipeline
from flows.training_parameters import ImageInput, SeriesInput, TrainingParameters

MODEL_NAME = Field("anomaly-detector", description="Registered model name in the MLflow registry.")
EXPERIMENT = Field("anomaly-distill", description="MLflow experiment for the runs.")
GATE = Field(default_factory=GateConfig, description="Promotion gate thresholds.")
# Settings a short form does not show: set by the pipeline itself, or (for a series) overridden by its series
# settings. Left out, they keep their defaults.
INTERNAL = (
    "advanced.engine.teacher.sequence",
    "advanced.engine.teacher.member_hints",
    "advanced.engine.distill.synthetic",
)
SERIES_OVERRIDES = (
    "advanced.engine.contamination",  # series.contamination
    "advanced.engine.test_fraction",  # series.train_fraction and validation_fraction: a split in time
    "advanced.engine.teacher.kind",  # series.teacher
    "advanced.engine.student.hidden",  # series.student_hidden
    "advanced.engine.distill.min_rows",  # series.distill_rows
    "advanced.engine.distill.temperature",  # series.temperature
    "advanced.engine.distill.beta",  # series.hint_weight
    "advanced.engine.student.compress",  # tables only
    "advanced.engine.student.prune_amount",
    "advanced.engine.student.prune_epochs",
    "advanced.engine.teacher.labels",  # a series teacher fits without labels
    "advanced.engine.teacher.label_prior",
)
HIDDEN = {"TableJob": INTERNAL, "SeriesJob": INTERNAL + SERIES_OVERRIDES, "ImageJob": ()}


class TableAdvanced(StrictModel):
    model_config = ConfigDict(title="Advanced (defaults shown)")

    engine: EngineConfig = Field(default_factory=EngineConfig, description="Teacher, student, distillation, seed.")
    gate: GateConfig = GATE
    segment_column: OptionalText = Field(None, description="One student per value of this column; empty: one model.")
    min_segment_rows: int = Field(500, ge=20, description="Smaller segments use the model trained on all rows.")
    holdout_column: OptionalText = Field(None, description="Rows with 1 here are the only held-out candidates.")
    max_rows_in_memory: int = Field(500_000, ge=1_000, description="A larger file trains on a uniform sample.")
    live_store: OptionalText = Field(None, description="Live store URL for live_window; empty: the default.")
    task_runner: RunnerKind = Field("threads", description="threads: this machine; dask: a Dask cluster.")
    dask_address: OptionalText = Field(None, description="Dask scheduler (tcp://host:8786); empty: a local cluster.")


class TableJob(StrictModel):
    """A table: one row per event, every column but the label a feature."""

    data_path: str = Field(..., description="CSV, Parquet or .npz file with the training table.")
    label_column: OptionalText = Field("label", description="1 = anomaly, 0 = normal, empty cell = not reviewed.")
    model_name: str = MODEL_NAME
    experiment: str = EXPERIMENT
    live_window: OptionalText = Field(None, description="Also train on the model's live rows this far back (7d).")
    advanced: TableAdvanced = Field(default_factory=TableAdvanced, description="Engine, gate, segments, scale-out.")

    def training(self) -> TrainingParameters:
        advanced = self.advanced.model_dump(exclude={"engine", "gate"})
        return TrainingParameters(
            **self.model_dump(exclude={"advanced"}), engine=self.advanced.engine, gate=self.advanced.gate, **advanced
        )


class SeriesAdvanced(StrictModel):
    model_config = ConfigDict(title="Advanced (defaults shown)")

    series: SeriesConfig = Field(default_factory=SeriesConfig, description="Windows, splits, frozen or online.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Teacher, student, distillation, seed.")
    gate: GateConfig = GATE


class SeriesJob(StrictModel):
    """A time series: a timestamp column plus value columns, scored point by point."""

    data_path: str = Field(..., description="CSV or Parquet file with the series.")
    timestamp_column: str = Field("timestamp", description="The timestamp column.")
    label_column: OptionalText = Field(None, description="A 0/1 column of labelled points; empty: none.")
    labels_path: OptionalText = Field(None, description="NAB-style label-window JSON; empty: none.")
    model_name: str = MODEL_NAME
    experiment: str = EXPERIMENT
    advanced: SeriesAdvanced = Field(default_factory=SeriesAdvanced, description="Series, engine and gate settings.")

    def training(self) -> TrainingParameters:
        series = SeriesInput(
            timestamp_column=self.timestamp_column, labels_path=self.labels_path, series=self.advanced.series
        )
        common = self.model_dump(include={"data_path", "label_column", "model_name", "experiment"})
        return TrainingParameters(**common, modality=series, engine=self.advanced.engine, gate=self.advanced.gate)


class ImageAdvanced(StrictModel):
    model_config = ConfigDict(title="Advanced (defaults shown)")

    image: ImageConfig = Field(default_factory=ImageConfig, description="Size, teacher, student, distillation.")
    gate: GateConfig = GATE


class ImageJob(StrictModel):
    """Images: a folder (good/ = normal, other subfolders = defects) or a CSV manifest path,label."""

    data_path: str = Field(..., description="The image folder or manifest.")
    model_name: str = MODEL_NAME
    experiment: str = EXPERIMENT
    advanced: ImageAdvanced = Field(default_factory=ImageAdvanced, description="Image and gate settings.")

    def training(self) -> TrainingParameters:
        common = self.model_dump(include={"data_path", "model_name", "experiment"})
        modality = ImageInput(image=self.advanced.image)
        return TrainingParameters(**common, label_column=None, modality=modality, gate=self.advanced.gate)


@flow(name="train-table", log_prints=True)
def train_table(params: TableJob) -> dict:
    """Train, gate, register and promote a model of a table (the one training pipeline, from a short form)."""
    return training_pipeline.fn(params.training())


@flow(name="train-series", log_prints=True)
def train_series(params: SeriesJob) -> dict:
    """Train, gate, register and promote a model of a time series (the one training pipeline, from a short form)."""
    return training_pipeline.fn(params.training())


@flow(name="train-images", log_prints=True)
def train_images(params: ImageJob) -> dict:
    """Train, gate, register and promote a model of images (the one training pipeline, from a short form)."""
    return training_pipeline.fn(params.training())


def short_form(schema: dict, job: type[StrictModel]) -> dict:
    """The form's schema without the settings `job` hides, and with the distillation class weight as one text
    box ("none", "balanced" or a number) instead of a type toggle. In place; returns it."""
    definitions = schema["definitions"]
    for path in HIDDEN[job.__name__]:
        *parents, name = path.split(".")
        definition = definitions[job.__name__]
        for parent in parents:
            prop = definition["properties"][parent]
            definition = definitions[(prop.get("$ref") or prop["allOf"][0]["$ref"]).split("/")[-1]]
        definition["properties"].pop(name, None)
    weight = definitions.get("DistillConfig", {}).get("properties", {}).get("class_weight")
    if weight is not None:
        kept = {key: weight[key] for key in ("description", "position") if key in weight}
        weight.clear()
        weight.update(type="string", default="none", **kept)
    return schema


def form_defaults(job: StrictModel, data_path: bool = True) -> dict:
    """A short form's default parameters: the settings it shows (a hidden one is left to its default); without
    `data_path`, the form asks for the data."""
    dumped = job.model_dump(mode="json", exclude=None if data_path else {"data_path"})
    for path in HIDDEN[type(job).__name__]:
        *parents, name = path.split(".")
        node = dumped
        for parent in parents:
            node = node[parent]
        node.pop(name)
    distill = dumped.get("advanced", {}).get("engine", {}).get("distill")
    if distill is not None:
        distill["class_weight"] = str(distill["class_weight"])
    return dumped
