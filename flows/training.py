"""training-pipeline: validate → teacher → soft labels → student → evaluate → gate → register → promote."""

from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.states import Completed

from anomaly_distill.tabular.compress import compression_summary
from flows import image_training, series_training, tabular_training
from flows.runners import with_runner
from flows.stages import Prepared, Stopwatch
from flows.training_parameters import KEY_EXCLUDES, TrainingParameters
from tasks import common, gating, registration, run_page, tracking

# What a run does that depends on its modality, by `params.modality.kind`: each module's `train` (prepare, then
# teacher → student) and `student_facts` (what the model card says of the student).
MODALITY_RUNS = {"tabular": tabular_training, "timeseries": series_training, "image": image_training}


@dataclass
class TrainingOutcome:
    model_name: str
    version: str
    promoted: bool
    reasons: list[str]
    metrics: dict
    run_id: str
    previous_champion: str | None = None
    teacher_from_cache: bool = False
    seconds: dict | None = None  # wall time of the compute stages (the rest is orchestration and tracking)
    reused_version: bool = False  # same training key as an earlier run: its version, not a new one


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(params: TrainingParameters = TrainingParameters()) -> dict:
    tags = {"git_commit": tracking.git_commit(), "seed": params.engine.seed, "model_name": params.model_name}
    clock = Stopwatch()
    started_at = datetime.now(timezone.utc)  # a person's later decision outranks this run's
    run_id = tracking.start_run(params.experiment, f"train-{params.model_name}", tags=tags)
    runs = [run_id]
    try:
        tracking.log_params(run_id, params.applied_settings())
        tracking.log_json(run_id, params.model_dump(), "config.json")  # all of them: the run can be repeated
        params, prepared, done = MODALITY_RUNS[params.modality.kind].train(params, run_id, runs, clock)
        verdict = gating.gate(done.metrics, params.model_name, prepared.gate_rows, params.gate, done.student)
        key = registration.training_key(
            prepared.digest,
            params.model_dump_json(exclude=KEY_EXCLUDES),
            params.modality.labels_path,
        )
        version = registration.register(
            done.student,
            prepared.example(done.student),
            prepared.reference(done.student),
            params.model_name,
            run_id,
            verdict,
            prepared.contract,
            key,
        )
        reused = version.run_id != run_id
        if reused:
            verdict.reasons.insert(0, registration.reuse_note(version))
        version = str(version.version)
        registration.refresh_promote_form(params.model_name)
        previous, verdict = gating.promote(
            params.model_name, version, verdict, done.metrics, prepared.gate_rows, params.gate, started_at, done.student
        )
        card = registration.model_card(
            _card_facts(params, prepared, version, done.student), verdict, done.metrics, run_id
        )
        registration.link_runs(params.model_name, version, run_id, verdict, done.metrics, reused, card)
        verdict_line = run_page.publish(params.model_name, version, run_id, verdict, done.metrics, reused)
        common.record_run(run_id, metrics={f"seconds_{stage}": s for stage, s in clock.items()})
    except BaseException:
        for run in runs:
            with suppress(Exception):  # best effort: the tracking server may be the thing that is down
                tracking.end_run(run, "FAILED")
        raise
    for run in runs:
        tracking.end_run(run)
    outcome = asdict(
        TrainingOutcome(
            params.model_name,
            version,
            verdict.promote,
            verdict.reasons,
            done.metrics,
            run_id,
            previous,
            done.teacher_cached,
            dict(clock),
            reused,
        )
    )
    get_run_logger().info(verdict_line)  # the run's last line, and its state message
    return Completed(message=verdict_line, data=outcome)


def _card_facts(params: TrainingParameters, prepared: Prepared, version: str, student) -> dict:
    """What the model card needs from this flow (the rest it reads from the run)."""
    rows = len(prepared.train) + len(prepared.test) + (0 if prepared.validation is None else len(prepared.validation))
    student_facts, contamination = MODALITY_RUNS[params.modality.kind].student_facts(params, student)
    return {
        "model_name": params.model_name,
        "version": version,
        "modality": params.modality.kind,
        "data_source": params.data_path,
        "data_digest": prepared.digest,
        "rows_used": rows,
        "train_rows": len(prepared.train),
        "test_rows": len(prepared.test),
        "labels": params.modality.labels_source(params),
        "contract": prepared.contract.model_dump(mode="json"),
        "student": student_facts,
        "contamination": contamination,
        "compression": compression_summary(params.engine.student.compress, student),
    }


def run_training(params: TrainingParameters) -> dict:
    return with_runner(training_pipeline, params.task_runner, params.dask_address)(params)
