"""Every tunable of the engine, in one place.

Pydantic models so the same objects validate CLI/YAML input and render as forms in the Prefect UI.
"""

import difflib
import typing
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

DetectorName = Literal["iforest", "ecod", "knn", "copod", "hbos"]
# What a user would pick instead of the student; the benchmark compares against these (PyOD defaults).
BaselineName = Literal["iforest", "ecod", "copod", "hbos", "knn", "lof"]
BASELINES: tuple[str, ...] = typing.get_args(BaselineName)


def _form_fields(schema: dict) -> None:
    """Form order = declaration order: the Prefect UI sorts fields by `position`, and without one a server on
    PostgreSQL shows them in its JSONB key order (by key length). An unset OptionalText shows as empty."""
    for position, field in enumerate(schema.get("properties", {}).values()):
        field["position"] = position
        if field.get("type") == "string" and "default" in field and field["default"] is None:
            field["default"] = ""


class StrictModel(BaseModel):
    """Every settings model: an unknown key is an error (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_form_fields)


# Text that may be left empty (= not set): a plain text box in a form, not a "None" toggle. None in Python.
OptionalText = Annotated[
    str | None,
    BeforeValidator(lambda value: None if value == "" else value),
    PlainSerializer(lambda value: value or "", return_type=str),
    WithJsonSchema({"type": "string"}),
]


class TeacherConfig(StrictModel):
    kind: Literal["ensemble", "autoencoder", "supervised", "conv_autoencoder"] = Field(
        "ensemble",
        description="ensemble: PyOD detectors averaged on ECDF scale (no labels needed); "
        "autoencoder: deep AE, reconstruction error; supervised: MLP classifier on the label column; "
        "conv_autoencoder: 1-D convolutional AE over time-series windows.",
    )
    sequence: tuple[int, int] | None = Field(
        None,
        description="(channels, window length) of the window at the start of each row, for the "
        "convolutional teacher; set by the time-series pipeline.",
    )
    detectors: list[DetectorName] = Field(
        ["iforest", "ecod", "knn"], description="PyOD detectors in the ensemble teacher."
    )
    combine: Literal["mean", "median", "max", "fisher", "agreement", "most_agreeing"] = Field(
        "mean",
        description="ensemble: how members' calibrated scores become one. mean; median; max; fisher (mean of "
        "-log tail probability: a confident member dominates); agreement (weighted by each member's rank "
        "agreement with the others on training rows); most_agreeing (that member alone). Chosen across 30 sets: "
        "see BENCHMARKS.md.",
    )
    member_hints: bool = Field(
        False, description="ensemble: give the student each member's calibrated score as hint targets."
    )
    labels: Literal["use", "ignore"] = Field(
        "use",
        description="ensemble: use the labelled anomalies of a partly labelled file (a boosted-trees classifier "
        "over the features and the members' scores, blended in; see models/labelled.py), or ignore every label.",
    )
    label_prior: float = Field(
        3.0,
        gt=0,
        description="ensemble with labels: the classifier's share of the score is n / (n + label_prior) for n "
        "labelled anomalies (3: three labels make it half, thirty 0.91; chosen across sets, BENCHMARKS.md).",
    )
    max_fit_rows: int = Field(
        20_000, ge=100, description="Teachers fit on a random subsample of at most this many training rows."
    )
    hidden: list[int] = Field([256, 128], description="Hidden widths of the autoencoder/supervised teacher.")
    bottleneck: int = Field(
        16, ge=1, description="Autoencoder bottleneck width (the hint features), at most half the feature count."
    )
    epochs: int = Field(40, ge=1, description="Training epochs of a neural teacher.")
    lr: float = Field(1e-3, gt=0, description="Learning rate of a neural teacher.")


class StudentConfig(StrictModel):
    hidden: list[int] = Field([64, 32], description="Hidden widths of the student MLP.")
    squash: float = Field(
        5.0, gt=0, description="Robust-scaled inputs are squashed by x/(1+|x|/squash) so outliers stay bounded."
    )
    compress: Literal["none", "int8", "prune"] = Field(
        "none",
        description="none: float32 weights; int8: int8 weights and calibrated activations (ONNX Runtime static "
        "quantisation, scored by ONNX Runtime); prune: the least important hidden units removed "
        "(prune_amount), then fine-tuned. The gate checks, and the registry stores, the compressed student.",
    )
    prune_amount: float = Field(0.5, gt=0, lt=1, description="prune: share of each hidden layer's units removed.")
    prune_epochs: int = Field(30, ge=1, description="prune: most fine-tuning epochs (early stopping as in distill).")


class DistillConfig(StrictModel):
    alpha: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Weight of the soft (teacher) loss vs the hard-label loss. Lower it when the "
        "data has true labels: teacher hard labels are a step function of the soft targets and add no information.",
    )
    schedule: Literal["weighted", "alternating"] = Field(
        "weighted",
        description="weighted: every step minimises α·soft + (1−α)·hard; alternating: epochs alternate between the "
        "soft term alone and the hard term alone (early stopping still watches the α-weighted sum).",
    )
    class_weight: Literal["none", "balanced"] | Annotated[float, Field(gt=0)] = Field(
        "none",
        description="Weight of anomaly rows (label 1) in the hard-label term: none (1), balanced (normal rows ÷ "
        "anomaly rows of the distillation set), or a number.",
    )
    temperature: float = Field(1.0, gt=0, description="Softening temperature T of teacher and student logits.")
    beta: float = Field(0.1, ge=0, description="Weight of the hint loss (teachers with hint features only).")
    epochs: int = Field(150, ge=1, description="Maximum student epochs (early stopping on validation loss).")
    patience: int = Field(15, ge=1, description="Epochs without validation improvement before stopping.")
    batch_size: int = Field(512, ge=8, description="Student mini-batch size.")
    lr: float = Field(3e-3, gt=0, description="Student learning rate (Adam).")
    max_real_rows: int = Field(100_000, ge=100, description="Training rows in the distillation set (subsampled).")
    min_rows: int = Field(
        20_000, ge=0, description="The distillation set is topped up with synthetic rows to this size."
    )
    synthetic_ratio: float = Field(1.0, ge=0, description="Perturbed rows added per real row.")
    noise_scale: float = Field(0.3, gt=0, description="Std of the Gaussian perturbation, in robust-scaled units.")
    uniform_fraction: float = Field(
        0.1, ge=0, le=1, description="Share of synthetic rows drawn uniformly in the data's box."
    )
    synthetic: Literal["perturb", "windows"] = Field(
        "perturb",
        description="perturb: Gaussian and uniform perturbations of training rows; windows: augmented "
        "time-series windows with their statistics recomputed (needs teacher.sequence; set for series).",
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of the distillation set held out for early stopping."
    )


class EngineConfig(StrictModel):
    seed: int = Field(0, description="Seed for splits, subsampling, synthetic rows and weight init.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Held-out share for evaluation (stratified on labels).")
    contamination: float = Field(
        0.05, gt=0, lt=0.5, description="Expected anomaly share: the threshold flags this share of training rows."
    )
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()


class OnlineConfig(StrictModel):
    """A series detector that learns from its stream (NAB's rules): each point is scored from the points before
    it, then learnt from. Defaults chosen leave-one-folder-out on NAB (BENCHMARKS.md, "Series that adapt")."""

    window: int = Field(16, ge=2, description="Points per window ending at each point.")
    reference: int = Field(500, ge=20, description="Most recent windows the teacher compares a window with.")
    refresh_every: int = Field(
        250, ge=1, description="Points between refreshes: the teacher's reference slides, the student is re-distilled."
    )
    warmup: int = Field(50, ge=10, description="Points seen before the first model; they score 0.")
    neighbours: int = Field(5, ge=1, description="Teacher: mean distance to this many nearest reference windows.")
    calibration: int = Field(4000, ge=100, description="Trailing raw scores a new raw score is ranked among.")
    range_history: int = Field(
        8000, ge=0, description="Trailing points whose range a value must leave to be a range alarm (0: all seen)."
    )
    range_margin: float = Field(0.0, ge=0, description="How far past that range, as a share of it, a value must lie.")
    coarse_scales: list[int] = Field(
        [4, 16],
        description="Also score the means of this many consecutive points, one coarser view per entry (its own "
        "windows, teacher, student and calibration): a slow change a window of single points misses. [] for one "
        "view (BENCHMARKS.md, 'Coarser views').",
    )
    rest: int = Field(60, ge=0, description="Points after an alarm during which scores are held at 0 (one alarm).")
    alarm_level: float = Field(0.99, gt=0, lt=1, description="A score at or above this starts a rest.")
    student: Literal["prototypes", "mlp"] = Field(
        "prototypes",
        description="The student's kind: the distance to a few k-means prototypes of the teacher's reference, with "
        "offsets fitted to the teacher's scores (prototypes), or a one-layer network trained on them (mlp).",
    )
    prototypes: int = Field(32, ge=2, le=512, description="Prototype windows of a prototypes student.")
    residual_prototypes: int = Field(
        0,
        ge=0,
        le=256,
        description="Reference windows the k-means prototypes explain worst (the student scores them furthest above "
        "the teacher), added one by one as prototypes of their own, in the main view. 0: none (more did not hold up "
        "leave-one-folder-out, BENCHMARKS.md 'Residual prototypes').",
    )
    coarse_residual_prototypes: int = Field(
        16,
        ge=0,
        le=256,
        description="The same in each coarser view, whose means of many points a few k-means centres fit worst "
        "(BENCHMARKS.md, 'Residual prototypes in the coarser views'). 0: none (the default before).",
    )
    student_hidden: int = Field(16, ge=2, le=256, description="Hidden width of the mlp student (one layer).")
    student_epochs: int = Field(150, ge=1, description="Full-batch epochs of each re-distillation.")
    frame: Literal["teacher", "student"] = Field(
        "teacher",
        description="Whose scores of the reference windows a raw score is read against after each refresh (their "
        "median and interquartile range): the teacher's leave-one-out scores (out of sample, and the same whatever "
        "the student's seed), or the student's own (in sample: it was fitted to those windows; the default of "
        "before, and the better one for the mlp student). BENCHMARKS.md, 'The student read on its teacher's scale'.",
    )
    scorer: Literal["student", "teacher"] = Field(
        "student", description="Who scores each point: the student (default) or the teacher (for comparison)."
    )
    seed: int = Field(0, description="Seed of the augmentations and of the student's initialisation.")

    @model_validator(mode="after")
    def _warmup_holds_windows(self) -> "OnlineConfig":
        if self.warmup < self.window + 10:
            raise ValueError(f"warmup ({self.warmup}) must be at least window + 10 ({self.window + 10})")
        if any(scale < 2 for scale in self.coarse_scales) or len(set(self.coarse_scales)) < len(self.coarse_scales):
            raise ValueError(f"coarse_scales {self.coarse_scales}: each must be 2 or more, and appear once")
        return self

    def coarse(self, scale: int) -> "OnlineConfig":
        """The settings of the view over means of `scale` points: its trailing spans (calibration, refresh) cover
        as many points as the main view's; `coarse_residual_prototypes` residual prototypes; no coarser views of
        its own, no rest and no range alarm (the main view has both)."""
        return self.model_copy(
            update={
                "coarse_scales": [],
                "residual_prototypes": self.coarse_residual_prototypes,
                "rest": 0,
                "calibration": max(100, self.calibration // scale),
                "refresh_every": max(1, self.refresh_every // scale),
            }
        )


# Engine settings a frozen series run takes from its series settings (`engine_for`): (engine path, series key).
SERIES_OWNS = (
    ("teacher.kind", "teacher"),
    ("student.hidden", "student_hidden"),
    ("distill.min_rows", "distill_rows"),
    ("distill.temperature", "temperature"),
    ("distill.beta", "hint_weight"),
    ("distill.synthetic", "augment"),
    ("contamination", "contamination"),
)


class SeriesConfig(StrictModel):
    """How a time series becomes window rows, and how it is split in time."""

    window: int = Field(32, ge=4, description="Points per window ending at each point (conv teacher: a multiple of 4).")
    stride: int = Field(1, ge=1, description="Step between training windows (scoring always scores every point).")
    train_fraction: float = Field(0.4, gt=0, lt=1, description="First share of the series: training period.")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Next share: picks the teacher (when labelled).")
    teacher: Literal["auto", "ensemble", "conv_autoencoder"] = Field(
        "auto",
        description="auto: the better of both on the validation period by AUROC when it has labels of "
        "both classes; else the ensemble alone (the autoencoder is not trained).",
    )
    contamination: float = Field(0.01, gt=0, lt=0.5, description="Share of training points above the alarm threshold.")
    student_hidden: list[int] = Field(
        [32, 16], description="Hidden widths of the series student MLP (window rows are narrow and cheap)."
    )
    augment: bool = Field(
        True,
        description="Synthetic distillation rows from window augmentations (off: the tabular engine's "
        "Gaussian and uniform perturbations of the window rows).",
    )
    distill_rows: int = Field(60_000, ge=0, description="Training windows topped up with augmented ones to this many.")
    temperature: float = Field(2.0, gt=0, description="Distillation temperature for series students.")
    hint_weight: float = Field(
        1.0, ge=0, description="Weight of the hint loss: the conv teacher's code or each ensemble member's score."
    )
    timestamp_policy: Literal["strict", "file_order"] = Field(
        "strict",
        description="strict: refuse repeated or backward timestamps; file_order: keep the rows as the "
        "file orders them (e.g. a daylight-saving clock change wrote the same hour twice).",
    )
    gap_tolerance: float = Field(3.0, gt=1, description="Report gaps longer than this many median steps.")
    min_train_windows: int = Field(200, ge=10, description="Fewest training windows a series must give.")
    mode: Literal["frozen", "online"] = Field(
        "frozen",
        description="frozen: a window student fitted once on the training period; online: a detector that learns "
        "from every point it scores (the `online` settings), warmed on the whole training series.",
    )
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="The online detector (mode: online).")


class ImageConfig(StrictModel):
    """Images: input size, the teacher, the student and its distillation."""

    size: int = Field(64, ge=16, le=512, multiple_of=4, description="Images are resized to size × size pixels.")
    channels: Literal[1, 3] = Field(3, description="3: colour (grey images are repeated); 1: grey.")
    min_size: int = Field(16, ge=1, description="Images smaller than this (either side) are refused by the contract.")
    teacher: Literal["auto", "autoencoder", "backbone", "ensemble"] = Field(
        "auto",
        description="autoencoder: a convolutional autoencoder trained on the normal images (fastest); backbone: a "
        "frozen ResNet-18 (torchvision layout) from `weights`, or seeded random weights without one, "
        "nearest-normal-location distance on its layer1–3 features; ensemble: both, maps averaged; auto: backbone "
        "(chosen leave-one-class-out on digits, BENCHMARKS.md).",
    )
    weights: OptionalText = Field(
        None, description="A local ResNet-18 weights file (state_dict); nothing is downloaded. Empty: none."
    )
    bank_size: int = Field(20_000, ge=100, description="backbone: normal locations kept in the memory bank.")
    teacher_epochs: int = Field(30, ge=1, description="autoencoder: training epochs.")
    student_widths: list[int] = Field(
        [16, 16],
        min_length=2,
        max_length=2,
        description=(
            "Channels of the student's first convolution and of the three after it ([16, 32]: ~0.003 AUROC closer "
            "to the teacher, ×1.6 slower)."
        ),
    )
    epochs: int = Field(
        200,
        ge=1,
        description="Student epochs (the best on a held-out tenth is kept; 200 chosen leave one class out on digits "
        "over 100, BENCHMARKS.md).",
    )
    batch_size: int = Field(32, ge=1, description="Student mini-batch size.")
    lr: float = Field(2e-3, gt=0, description="Student learning rate (Adam).")
    hint_weight: float = Field(0.5, ge=0, description="Weight of the hint term (teacher features) in the loss.")
    synthetic_per_image: int = Field(2, ge=0, description="Damaged copies of each normal training image distilled.")
    elastic_per_image: int = Field(
        2, ge=0, description="Smoothly deformed copies of each normal training image distilled (changed shapes)."
    )
    rearranged_per_image: int = Field(
        4,
        ge=0,
        description="Copies of each normal training image distilled with its quarters rearranged (normal parts, "
        "turned or mirrored, in new places).",
    )
    turned_per_image: int = Field(
        2,
        ge=0,
        description="Copies of each normal training image distilled turned by a multiple of 90° or mirrored "
        "(whole normal images in orientations the normal images never hold; 2 chosen leave one class out on "
        "digits over 0, BENCHMARKS.md).",
    )
    student_map: Literal["distilled", "density", "max", "mean"] = Field(
        "mean",
        description="The student's map: the one distilled from the teacher's; the density of its own hidden "
        "features (how far each location lies from the normal training images' there); the larger of both; or "
        "their mean (chosen leave one class out on digits over the others, BENCHMARKS.md).",
    )
    standardise_images: bool = Field(
        False,
        description="Bring each image to the normal training images' typical brightness and contrast before the "
        "teacher and the student see it (a line whose lighting or contrast varies from image to image).",
    )
    reduction: Literal["max", "topk_mean"] = Field(
        "topk_mean", description="Image score from the map: its maximum, or the mean of its top 1 % locations."
    )
    contamination: float = Field(0.05, gt=0, lt=0.5, description="Share of training images above the threshold.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of normal images held out (defects always are).")
    seed: int = Field(0, description="Seed for the split, synthetic defects, the memory bank and weight init.")


class GateConfig(StrictModel):
    """When a freshly distilled student (the challenger) may replace the champion."""

    min_auroc: float = Field(0.7, ge=0, le=1, description="Absolute minimum held-out AUROC.")
    auroc_tolerance: float = Field(
        0.01, ge=0, le=1, description="The challenger may trail the champion's AUROC by at most this much."
    )
    auprc_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="The challenger may trail the champion's AUPRC by at most this much (wider than AUROC's: "
        "with few labelled anomalies AUPRC moves in larger steps).",
    )
    min_fidelity: float = Field(0.9, ge=-1, le=1, description="Minimum Spearman fidelity to the teacher.")
    image_auroc_fidelity: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Image models with both classes among the held-out images: fidelity is the student's AUROC "
        "within this much of its teacher's, instead of the Spearman rank agreement (which asks a student that "
        "learnt normal images' maps to rank unseen kinds of anomaly in the teacher's order among themselves).",
    )
    max_size_bytes: int = Field(5_000_000, gt=0, description="Largest allowed serialized student.")
    min_rows_per_second: float = Field(50_000, ge=0, description="Slowest allowed single-thread scoring rate.")
    min_images_per_second: float = Field(
        100, ge=0, description="Image models: slowest allowed single-thread scoring rate, in images/s."
    )
    unlabelled: Literal["compare_reference", "hold", "fidelity_only"] = Field(
        "compare_reference",
        description="A run without labels (or with one class held out) while there is a champion: "
        "compare_reference scores both on the champion's labelled reference snapshot and holds the challenger "
        "for a person when that has no labels; hold always leaves it to a person; fidelity_only promotes on "
        "fidelity, size and speed alone.",
    )


# Settings that used to sit at the top of the training parameters, and where they live now.
MOVED_KEYS = {
    "teacher_kind": "engine.teacher.kind",
    "student_hidden": "engine.student.hidden",
    "alpha": "engine.distill.alpha",
    "temperature": "engine.distill.temperature",
    "beta": "engine.distill.beta",
    "epochs": "engine.distill.epochs",
    "contamination": "engine.contamination",
    "seed": "engine.seed",
}


def _nested_models(annotation) -> dict[str, type[BaseModel]]:
    """The settings models a field may hold, by class name (several for a union such as `modality`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation.__name__: annotation}
    return {name: m for arg in typing.get_args(annotation) for name, m in _nested_models(arg).items()}


def _walk(model: type[BaseModel], location: tuple) -> tuple[type[BaseModel], list[str]]:
    """The model the last key of `location` belongs to, and the location without union branch names."""
    path, parts = [], list(location)
    while parts:
        part = parts.pop(0)
        path.append(str(part))
        field = model.model_fields.get(part) if isinstance(part, str) and parts else None
        inner = _nested_models(field.annotation) if field is not None else {}
        if len(inner) > 1 and parts and parts[0] in inner:  # pydantic names the union branch it tried
            inner = {parts[0]: inner[parts.pop(0)]}
        if len(inner) != 1:
            return model, path + [str(p) for p in parts]
        model = next(iter(inner.values()))
    return model, path


def _unknown_key_message(model: type[BaseModel], location: tuple) -> str:
    """`gate.min_aurok: unknown key; did you mean min_auroc?` (walks nested models along the error location)."""
    owner, path = _walk(model, location)
    key = str(location[-1])
    if len(location) == 1 and key in MOVED_KEYS and key not in owner.model_fields:
        return f"{key}: unknown key; it is set as {MOVED_KEYS[key]} now"
    close = difflib.get_close_matches(key, list(owner.model_fields), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(owner.model_fields)}"
    return f"{'.'.join(path)}: unknown key; {hint}"


def _other_branches(problems: list[dict]) -> set[tuple]:
    """Union branches whose `kind` does not match the input: their errors say nothing about the input."""
    return {tuple(p["loc"][:-1]) for p in problems if p["type"] == "literal_error" and p["loc"][-1] == "kind"}


def _grouped(branches: set[tuple]) -> list[list[tuple]]:
    """Branch locations grouped by the union field they belong to."""
    groups: dict[tuple, list[tuple]] = {}
    for branch in branches:
        groups.setdefault(branch[:-1], []).append(branch)
    return list(groups.values())


def _all_skipped(problems: list[dict], branches: list[tuple]) -> bool:
    parent = branches[0][:-1]
    tried = {tuple(p["loc"][: len(parent) + 1]) for p in problems if tuple(p["loc"][: len(parent)]) == parent}
    return tried <= set(branches)


def _no_branch_matches(model: type[BaseModel], branches: list[tuple]) -> str:
    owner, path = _walk(model, branches[0][:-1] + ("kind",))
    kinds = ", ".join(
        repr(m.model_fields["kind"].default) for m in _nested_models(owner.model_fields[path[-2]].annotation).values()
    )
    return f"{'.'.join(path[:-1])}.kind: must be one of {kinds}"


def settings_error(model: type[BaseModel], error: ValidationError) -> str:
    """A validation error as one line per problem, naming the key (and the nearest valid one for a typo)."""
    problems = error.errors()
    skip = _other_branches(problems)
    lines = [_no_branch_matches(model, branches) for branches in _grouped(skip) if _all_skipped(problems, branches)]
    for problem in problems:
        location = tuple(problem["loc"])
        if any(location[: len(branch)] == branch for branch in skip):
            continue
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_key_message(model, location))
        else:
            lines.append(f"{'.'.join(_walk(model, location)[1]) or '(top level)'}: {problem['msg']}")
    return "invalid settings:\n" + "\n".join(f"  - {line}" for line in lines)


def parse_settings(model: type[BaseModel], payload: dict | None):
    """Validated settings, or SettingsError naming every bad key."""
    try:
        return model.model_validate(payload or {})
    except ValidationError as error:
        raise SettingsError(settings_error(model, error)) from None


class SettingsError(ValueError):
    """Settings (a --config file, flow parameters) that cannot be used, with every problem named."""
