"""The image branch of training-pipeline: image contract → teacher → student → evaluation (with map overlays).

It hands the same `Prepared` and `Distilled` to the shared gate → register → promote → model card steps as the
tabular and series branches (flows/training.py)."""

from typing import ClassVar, Literal

import pandas as pd
from pydantic import ConfigDict, Field

from anomaly_distill.config import ImageConfig, StrictModel
from anomaly_distill.image_pipeline import split_images
from flows.stages import TABLE_ONLY, Distilled, Prepared, Stopwatch
from tasks import common
from tasks import images as im


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

    def student_facts(self, params, student) -> tuple[dict, float]:
        facts = {"hidden": self.image.student_widths, "distill": self.image.model_dump(mode="json")}
        return facts, self.image.contamination

    def train(self, params, run_id: str, runs: list, clock: Stopwatch):
        prepared = prepare_images(params, run_id)
        return params, prepared, distill_images(params, prepared, run_id, runs, clock)


def prepare_images(params, run_id: str):
    config = params.modality.image
    data, contract, digest = im.load_images(params.data_path, config)
    common.record_run(run_id, params=im.image_set_params(data, digest))
    train, test = split_images(data, config)
    return Prepared(
        contract,
        digest,
        train,
        test,
        candidates={},
        wrap=lambda student: student,
        gate_rows=im.ImageGateRows(test),
        example=lambda _: pd.DataFrame({"path": test.paths[:2]}),
        reference=lambda detector: detector.describe(train.images),
    )


def distill_images(params, prepared, run_id: str, runs: list, clock):
    config = params.modality.image
    teacher_run, student_run = common.start_child_runs(run_id, "teacher", "student")
    runs += [teacher_run, student_run]
    with clock("train_teacher"):
        teacher = im.train_teacher(prepared.train, config)
    teacher_params = {"teacher": teacher.kind, "weights": config.weights or ""}
    common.record_run(teacher_run, params=teacher_params, metrics={"params": teacher.n_params})
    common.record_run(run_id, tags={"teacher_kind": teacher.kind, "teacher_choice": _teacher_choice(config.teacher)})
    with clock("distill_student"):
        student = im.distill_student(teacher, prepared.train, config)
    common.record_run(student_run, params={"image": config.model_dump()})
    common.log_history(student_run, student.history)
    with clock("evaluate"):
        metrics = im.evaluate(teacher, student, prepared.test, config, [run_id, student_run])
    return Distilled(student, metrics, student_run)


def _teacher_choice(setting: str) -> str:
    return (
        "image.teacher: auto (the backbone, chosen leave-one-class-out)"
        if setting == "auto"
        else "set by image.teacher"
    )
