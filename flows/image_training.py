"""The image branch of training-pipeline: image contract → teacher → student → evaluation (with map overlays).

It hands the same `Prepared` and `Distilled` to the shared gate → register → promote → model card steps as the
tabular and series branches (flows/training.py)."""

import pandas as pd

from anomaly_distill.image.image_pipeline import split_images
from flows.stages import Distilled, Prepared, Stopwatch
from tasks import common
from tasks import images as im


def student_facts(params, student) -> tuple[dict, float]:
    facts = {"hidden": params.modality.image.student_widths, "distill": params.modality.image.model_dump(mode="json")}
    return facts, params.modality.image.contamination


def train(params, run_id: str, runs: list, clock: Stopwatch):
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
