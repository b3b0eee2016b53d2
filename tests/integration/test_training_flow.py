"""The training pipeline for real: Prefect flow, Great Expectations, MLflow tracking and registry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from anomaly_distill.config import GateConfig
from anomaly_distill.data import load_table, sample_file
from anomaly_distill.tabular import pipeline
from flows.cli import main
from flows.training import TrainingParameters, training_pipeline
from tasks.tracking import tracking_uri

NAME = "thyroid-test"
FAST = {"engine": {"distill": {"epochs": 20}}, "model_name": NAME, "label_column": "label"}


def train(data, **overrides):
    return training_pipeline(TrainingParameters(data_path=str(data), **{**FAST, **overrides}))


def mlflow_client():
    return MlflowClient(tracking_uri(), tracking_uri())


def versions():
    return sorted(int(v.version) for v in mlflow_client().search_model_versions(f"name='{NAME}'"))


def champion():
    return str(mlflow_client().get_model_version_by_alias(NAME, "champion").version)


def test_first_run_promotes_with_everything_tracked_then_second_run_is_gated(workspace, thyroid_csv):
    first = train(thyroid_csv)
    assert first["version"] == "1" and first["promoted"] and champion() == "1"
    assert not first["teacher_from_cache"]
    client = mlflow_client()
    parent = client.get_run(first["run_id"])
    assert parent.data.tags["git_commit"] and parent.data.tags["seed"] == "0"
    assert parent.data.params["data_path"] == str(thyroid_csv) and parent.data.params["gate.min_auroc"] == "0.7"
    assert parent.data.metrics["auroc"] > 0.9 and parent.data.metrics["fidelity"] > 0.9
    assert parent.inputs.dataset_inputs[0].dataset.digest
    children = {
        r.info.run_name: r
        for r in client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first['run_id']}'")
    }
    assert set(children) == {"teacher", "student"}
    student_run = children["student"].info.run_id
    assert len(client.get_metric_history(student_run, "val_total")) > 5
    parent_files = {f.path for f in client.list_artifacts(first["run_id"], "plots")}
    assert parent_files == {"plots/roc.png", "plots/pr.png", "plots/teacher_vs_student.png"}
    assert client.list_artifacts(first["run_id"], "validation")[0].path == "validation/ge_result.json"
    assert "config.json" in {f.path for f in client.list_artifacts(first["run_id"])}
    assert set(first["seconds"]) == {"train_teacher", "generate_soft_labels", "distill_student", "evaluate"}
    assert "soft_labels.parquet" in {f.path for f in client.list_artifacts(student_run)}
    parent_files = {f.path for f in client.list_artifacts(first["run_id"])}
    assert {"contract.json", "onnx", "reference.parquet"} <= parent_files  # the model hangs on the parent run
    teacher_run = children["teacher"].info.run_id
    assert "teacher.json" in {f.path for f in client.list_artifacts(teacher_run)}
    version = client.get_model_version(NAME, "1")
    assert version.tags["gate"] == "passed" and version.run_id == first["run_id"]
    card = version.description  # the model card (issue 16), also the run's model_card.md
    assert card.startswith(f"# Model card: {NAME} v1") and "## Gate verdict: PROMOTE" in card and "pass: AUROC" in card
    sections = ["Intended use", "Data", "Input contract", "Teacher and student", "Metrics on held-out rows"]
    assert all(f"## {section}\n" in card for section in [*sections, "Compression", "Known limitations"])
    assert "- teacher: ensemble (iforest, ecod, knn); held out: AUROC 0." in card and "labels: column `label`" in card
    assert "| champion |" in card and "No champion yet" in card  # the first version has none to compare
    digest = parent.data.params["data_digest"]  # one digest: card, parameter, MLflow dataset
    assert f"- digest: `{digest}`" in card and parent.inputs.dataset_inputs[0].dataset.digest == digest
    members = json.loads(parent.data.params["engine.teacher.detectors"])  # the card says what the parameters say
    assert f"- teacher: {parent.data.params['engine.teacher.kind']} ({', '.join(members)})" in card
    assert f"hidden widths {json.loads(parent.data.params['engine.student.hidden'])}" in card
    info = mlflow.models.get_model_info(f"models:/{NAME}/1")
    assert info.name == f"{NAME}-tabular-student" and info.signature.inputs.input_names() == [f"f{i}" for i in range(6)]
    logged = client.download_artifacts(first["run_id"], "model_card.md", str(thyroid_csv.parent))
    assert Path(logged).read_text() == card
    assert client.get_run(first["run_id"]).info.run_name == f"train-{NAME}-v1"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    assert children["student"].data.tags["prefect.flow_run_id"] == flow_run_id
    assert version.tags["prefect.flow_run_id"] == flow_run_id

    # other student parameters: a new model, same (cached) teacher, gated against version 1 on the same rows
    second = train(
        thyroid_csv, engine={"distill": {"epochs": 21}}, gate=GateConfig(auroc_tolerance=1.0, auprc_tolerance=1.0)
    )
    assert second["version"] == "2" and second["teacher_from_cache"] and second["promoted"]
    assert any(reason.startswith("pass: AUROC") and "champion" in reason for reason in second["reasons"])
    assert str(mlflow_client().get_model_version_by_alias(NAME, "challenger").version) == "2" and champion() == "2"
    card = mlflow_client().get_model_version(NAME, "2").description
    auroc = next(line for line in card.splitlines() if line.startswith("| AUROC |"))
    assert "| champion (v1) |" in card and auroc.count("0.") == 2  # this version's AUROC beside the champion's


def test_an_engine_only_knob_set_through_train_config_changes_the_model(workspace, thyroid_csv):
    (workspace / "iforest.yaml").write_text("engine:\n  teacher: {detectors: [iforest]}\n  distill: {epochs: 20}\n")
    assert main(["train", "--data", str(thyroid_csv), "--model-name", NAME, "--config", "iforest.yaml"]) == 0
    default = train(thyroid_csv)
    client = mlflow_client()
    teachers = {}
    for version in ("1", "2"):
        parent = client.get_model_version(NAME, version).run_id
        teacher = client.search_runs(
            [client.get_run(parent).info.experiment_id],
            f"tags.mlflow.parentRunId = '{parent}' and tags.mlflow.runName = 'teacher'",
        )[0]
        teachers[version] = teacher.data
    assert teachers["1"].params["teacher.detectors"] == '["iforest"]'
    assert teachers["2"].params["teacher.detectors"] == '["iforest", "ecod", "knn"]' and default["version"] == "2"
    assert teachers["1"].metrics["params"] != teachers["2"].metrics["params"]


def test_failed_gate_keeps_champion(workspace, thyroid_csv):
    train(thyroid_csv)
    strict = train(thyroid_csv, gate=GateConfig(min_auroc=0.99999))
    assert not strict["promoted"] and champion() == "1" and versions() == [1, 2]
    assert any(r.startswith("FAIL: AUROC") for r in strict["reasons"])
    assert mlflow_client().get_model_version(NAME, "2").tags["gate"] == "failed"


def test_the_same_table_with_another_hold_out_gets_a_new_teacher_and_version(workspace, thyroid_csv):
    """The keys were digests taken after the hold-out column was dropped: a teacher fitted on another split was
    reused, with the gate's rows in its training set."""
    frame = pd.read_csv(thyroid_csv)
    rows = np.random.default_rng(0).permutation(len(frame))
    for name, marked in (("a", rows[: len(frame) // 2]), ("b", rows[len(frame) // 2 :])):
        frame.assign(holdout=np.isin(np.arange(len(frame)), marked).astype(int)).to_csv(
            workspace / f"{name}.csv", index=False
        )
    first = train(workspace / "a.csv", holdout_column="holdout")
    other = train(
        workspace / "b.csv", holdout_column="holdout", gate=GateConfig(auroc_tolerance=1.0, auprc_tolerance=1.0)
    )
    assert not other["teacher_from_cache"] and other["version"] == "2" and not other["reused_version"]
    again = train(workspace / "a.csv", holdout_column="holdout")
    assert again["teacher_from_cache"] and again["reused_version"] and again["version"] == first["version"]


def test_rerun_after_a_crash_past_registration_reuses_the_version(workspace, thyroid_csv, monkeypatch):
    from stores import registry

    def server_gone(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    with monkeypatch.context() as patch, pytest.raises(ConnectionError):
        patch.setattr(registry, "move_champion", server_gone)  # the crash comes after the version was created
        train(thyroid_csv)
    assert versions() == [1]
    rerun = train(thyroid_csv)
    assert rerun["version"] == "1" and rerun["reused_version"] and rerun["promoted"] and champion() == "1"
    assert versions() == [1]
    assert (
        train(thyroid_csv, engine={"seed": 1, "distill": {"epochs": 20}})["version"] == "2"
    )  # other inputs: a new version


def _bad_files(good: pd.DataFrame, folder) -> dict:
    nan = good.copy()
    nan.loc[5, "f1"] = np.nan
    text = good.astype({"f2": object})
    text.loc[7, "f2"] = "unknown"
    wrong_label = good.copy()
    wrong_label.loc[3, "label"] = 2
    cases = {"nan": nan, "string": text, "missing column": good.drop(columns=["f4"]), "label": wrong_label}
    paths = {}
    for name, frame in cases.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


EXPECTED = {
    "nan": "expect_column_values_to_not_be_null(column='f1'): 1 unexpected values",
    "string": "expect_column_values_to_be_in_type_list(column='f2')",
    "missing column": "expect_table_columns_to_match_set(): columns differ: {'missing': ['f4']}",
    "label": "expect_column_values_to_be_in_set(column='label', value_set=[0, 1]): 1 unexpected values, e.g. [2]",
}


def test_bad_data_fails_validation_and_registers_nothing(workspace, thyroid_csv, capsys):
    bad = _bad_files(pd.read_csv(thyroid_csv), workspace)
    assert main(["train", "--data", str(bad["nan"]), "--label-column", "label", "--model-name", NAME]) == 2
    assert "data validation failed" in capsys.readouterr().err
    assert mlflow_client().search_registered_models() == []

    train(thyroid_csv)
    for case, path in bad.items():
        assert main(["train", "--data", str(path), "--label-column", "label", "--model-name", NAME]) == 2, case
        assert EXPECTED[case] in capsys.readouterr().err, case
        assert versions() == [1] and champion() == "1", case


def test_a_file_over_the_memory_limit_trains_on_a_sample_and_a_bad_cell_outside_it_is_refused(
    workspace, thyroid_csv, capsys
):
    frame = pd.read_csv(thyroid_csv)
    frame.to_parquet(workspace / "big.parquet", row_group_size=500)
    result = train(workspace / "big.parquet", max_rows_in_memory=1_500)
    params = mlflow_client().get_run(result["run_id"]).data.params
    assert (params["file_rows"], params["rows_sampled"]) == (str(len(frame)), "1500")
    assert result["promoted"] and versions() == [1]

    sample, _ = sample_file(workspace / "big.parquet", 1_500, seed=TrainingParameters().engine.seed)
    outside = next(i for i, row in enumerate(frame.itertuples(index=False)) if row not in set(sample.itertuples(False)))
    frame.loc[outside, "f1"] = np.nan
    frame.to_parquet(workspace / "bad.parquet", row_group_size=500)
    config = workspace / "sampled.yaml"
    config.write_text("max_rows_in_memory: 1500\nengine: {distill: {epochs: 20}}\n")
    argv = ["train", "--data", str(workspace / "bad.parquet"), "--label-column", "label", "--model-name", NAME]
    assert main([*argv, "--config", str(config)]) == 2
    assert f"whole file ({len(frame):,} rows): column 'f1': 1 missing (first in row {outside + 1:,})" in (
        capsys.readouterr().err
    )
    assert versions() == [1]


def test_promote_and_rollback(workspace, thyroid_csv, capsys):
    train(thyroid_csv)
    train(thyroid_csv, gate=GateConfig(min_auroc=0.99999))
    assert champion() == "1"
    assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0 and champion() == "2"
    assert main(["rollback", "--model-name", NAME]) == 0 and champion() == "1"
    assert "rolled back v2 -> v1" in capsys.readouterr().out
    tags = {v: mlflow_client().get_model_version(NAME, v).tags["promotion"] for v in ("1", "2")}
    assert tags["1"].startswith("champion since ") and tags["1"].endswith("rollback from v2")
    assert tags["2"].startswith("was champion from ") and tags["2"].endswith("replaced by v1")  # not "since"
    assert main(["rollback", "--model-name", NAME]) == 2
    assert "no previous champion" in capsys.readouterr().err
    assert main(["promote", "--model-name", NAME, "--version", "9"]) == 2
    assert "has no version 9" in capsys.readouterr().err


def test_champion_pyfunc_in_a_fresh_process_matches_the_engine(workspace, thyroid_csv):
    params = TrainingParameters(data_path=str(thyroid_csv), **FAST)
    training_pipeline(params)
    config = params.engine
    train_rows, test = pipeline.split(load_table(thyroid_csv, "label"), config)
    trained = pipeline.train_teacher(train_rows, config)
    soft = pipeline.generate_soft_labels(trained, train_rows, config)
    engine = pipeline.distill_student(soft, trained, train_rows, config)
    test.features.to_csv(workspace / "rows.csv", index=False)
    script = (
        "import mlflow, pandas as pd, json, sys\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "out = model.predict(pd.read_csv('rows.csv'))\n"
        "strict = model.predict(pd.read_csv('rows.csv'), params={'threshold': -1e9})\n"
        "json.dump({'score': out['score'].tolist(), 'flag': out['is_anomaly'].tolist(),"
        " 'all': bool(strict['is_anomaly'].all())}, sys.stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=workspace, check=True)
    served = json.loads(done.stdout.strip().splitlines()[-1])
    expected = engine.predict(test.features)
    np.testing.assert_allclose(served["score"], expected["score"], rtol=1e-5, atol=1e-5)
    assert served["flag"] == expected["is_anomaly"].tolist() and served["all"]


def test_a_compressed_student_is_what_the_gate_checks_the_registry_stores_and_the_pyfunc_serves(workspace, thyroid_csv):
    import mlflow

    from anomaly_distill.tabular.compress import Int8Student

    float_version = train(thyroid_csv)
    (workspace / "int8.yaml").write_text("engine:\n  student: {compress: int8}\n  distill: {epochs: 20}\n")
    assert main(["train", "--data", str(thyroid_csv), "--model-name", NAME, "--config", "int8.yaml"]) == 0
    client = mlflow_client()
    version = client.get_model_version(NAME, "2")
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["size_bytes"] < 0.75 * float_version["metrics"]["size_bytes"]  # the gate saw the int8 student
    assert "int8: int8 weights" in version.description and "Distilled float student" in version.description
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    detector = model.unwrap_python_model().detector
    assert isinstance(detector, Int8Student)
    rows = load_table(thyroid_csv, "label").features.head(300)
    served = model.predict(rows, params={"explain": 2})
    expected = detector.predict(rows, explain=2)
    pd.testing.assert_frame_equal(served.reset_index(drop=True), expected.reset_index(drop=True))
    assert served.is_anomaly.any() and (served.explanation[served.is_anomaly] != "").all()


@pytest.mark.slow
def test_mlflow_project_train_entry_point(workspace, thyroid_csv):
    import os
    from pathlib import Path

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    project = Path(__file__).resolve().parents[2] / "mlflow_project"
    (workspace / "fast.yaml").write_text("engine: {distill: {epochs: 20}}\n")  # the project's config parameter
    subprocess.run(
        [
            "mlflow",
            "run",
            str(project),
            "-e",
            "train",
            "--env-manager",
            "local",
            "-P",
            f"data={thyroid_csv}",
            "-P",
            f"model_name={NAME}",
            "-P",
            f"config={workspace / 'fast.yaml'}",
        ],
        check=True,
        cwd=workspace,
        env=env,
        capture_output=True,
    )
    assert champion() == "1"
    project_run = mlflow_client().get_model_version(NAME, "1").run_id  # the model hangs on the project's run
    assert mlflow_client().get_run(project_run).data.tags.get("mlflow.project.entryPoint") == "train"
    assert mlflow_client().get_run(project_run).data.params["engine.distill.epochs"] == "20"


def test_unlabelled_table_trains_and_gate_says_auroc_was_skipped(workspace, thyroid_csv, capsys):
    unlabelled = workspace / "unlabelled.csv"
    pd.read_csv(thyroid_csv).drop(columns=["label"]).to_csv(unlabelled, index=False)
    assert main(["train", "--data", str(unlabelled), "--model-name", NAME]) == 0
    out = capsys.readouterr().out
    assert "no labels in the evaluation rows, AUROC checks skipped" in out and "Gate: PASSED" in out
    assert champion() == "1"


@pytest.mark.slow
def test_teacher_members_on_a_two_worker_dask_cluster_match_local_training(workspace, thyroid_csv):
    import uuid

    from sklearn.metrics import roc_auc_score

    from flows.training import run_training

    # Rows in a fresh random order: a data digest no earlier run has cached, so the teacher is really fitted.
    frame = pd.read_csv(thyroid_csv)
    shuffled = workspace / "shuffled.csv"
    frame.iloc[np.random.default_rng(uuid.uuid4().int % 2**32).permutation(len(frame))].to_csv(shuffled, index=False)
    params = TrainingParameters(data_path=str(shuffled), task_runner="dask", **FAST)
    on_dask = run_training(params)
    assert not on_dask["teacher_from_cache"]
    train_rows, test = pipeline.split(load_table(shuffled, "label"), params.engine)
    local = pipeline.train_teacher(train_rows, params.engine)
    logged = mlflow_client().get_run(on_dask["run_id"]).data.metrics["teacher_auroc"]
    assert logged == pytest.approx(roc_auc_score(test.labels, local.score(test.features)))


@pytest.mark.slow
def test_cluster_map_fans_out_on_a_dask_worker_and_is_plain_map_elsewhere():
    from distributed import Client, LocalCluster

    from tasks.fitting import cluster_map

    assert cluster_map() is map
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        squares = client.submit(lambda: list(cluster_map()(lambda x: x * x, [1, 2, 3])), pure=False).result(120)
        on_worker = client.submit(lambda: cluster_map() is not map, pure=False).result(120)
    assert squares == [1, 4, 9] and on_worker


def test_the_validation_report_lists_every_check_not_just_a_verdict(thyroid_csv):
    from tasks.validation import validate_frame

    frame = pd.read_csv(thyroid_csv)
    passed = validate_frame(frame, "label", None).markdown()
    assert "expectations met" in passed and "| pass | `expect_column_values_to_not_be_null(column='f0')` |" in passed
    broken = frame.assign(f0=frame["f0"].where(frame.index != 3))
    failed = validate_frame(broken, "label", None).markdown()
    assert failed.startswith("# Data validation FAILED") and "| FAIL | `expect_column_values_to_not_be_null" in failed


def test_the_flow_run_carries_the_verdict_metrics_and_links_and_mlflow_names_its_source(workspace, thyroid_csv):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    state = training_pipeline(TrainingParameters(data_path=str(thyroid_csv), **FAST), return_state=True)
    outcome = state.result()
    assert state.message == f"{NAME} v1: gate passed, promoted to champion"  # the run's state message
    APILogHandler().flush()  # the run's logs are sent in batches
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(state.state_details.flow_run_id)
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
        logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    by_key = {artifact.key: artifact for artifact in found if artifact.key}
    assert {"gate-verdict", "metrics", "data-validation"} <= set(by_key)
    assert by_key["gate-verdict"].task_run_id is None and by_key["metrics"].task_run_id is None  # the flow run's own
    table = json.loads(by_key["metrics"].data) if isinstance(by_key["metrics"].data, str) else by_key["metrics"].data
    auroc = next(row for row in table if row["metric"] == "auroc")
    assert auroc["this version"] == f"{outcome['metrics']['auroc']:.4f}" and auroc["champion"] == "–"
    own = [log.message for log in sorted(logs, key=lambda log: log.timestamp) if log.task_run_id is None]
    assert own[-2] == state.message  # the last line before Prefect's "Finished in state …"
    run = mlflow_client().get_run(outcome["run_id"])
    tags = run.data.tags
    assert tags["mlflow.source.name"] == "prefect flow training-pipeline" and tags["mlflow.user"]
    note = tags["mlflow.note.content"]  # the run's description: a clickable link back, then the model card
    assert note.startswith(f"**Prefect flow run:** [{flow_run.name}](http") and f"/runs/flow-run/{flow_run.id})" in note
    children = mlflow_client().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {child.data.tags["mlflow.user"] for child in children} == {tags["mlflow.user"]}


def test_the_cli_prints_only_the_projects_lines_unless_verbose(tmp_path, thyroid_csv):
    """A real `anomaly-distill` process: no library warnings, MLflow INFO lines, download progress bars or
    Prefect's per-task lines; bad input is one `error:` line. --verbose shows them again."""
    command = [str(Path(sys.executable).with_name("anomaly-distill")), "train", "--label-column", "label"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'quiet.db'}"}
    env.pop("PREFECT_API_URL", None)

    def run(*args):
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    (tmp_path / "fast.yaml").write_text("engine: {distill: {epochs: 20}}\n")
    trained = run("--data", str(thyroid_csv), "--model-name", "quiet", "--config", str(tmp_path / "fast.yaml"))
    assert trained.returncode == 0, trained.stderr[-2000:]
    noise = ("Warning", "Downloading artifacts", "Finished in state", "INFO mlflow", "great_expectations")
    assert not [line for line in trained.stderr.splitlines() if any(n in line for n in noise)], trained.stderr
    assert "quiet v1: gate passed, promoted to champion" in trained.stderr and "Gate: PASSED" in trained.stdout
    missing = run("--data", str(tmp_path / "none.csv"), "--model-name", "quiet")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: data file not found: {tmp_path / 'none.csv'}"
    ]
    verbose = run("--data", str(tmp_path / "none.csv"), "--model-name", "quiet", "--verbose")
    assert verbose.returncode == 2 and "Finished in state Failed" in verbose.stderr


def test_the_short_table_form_runs_the_one_training_pipeline(workspace, thyroid_csv):
    from flows.jobs import TableJob, train_table

    job = TableJob.model_validate(
        {"data_path": str(thyroid_csv), "model_name": NAME, "advanced": {"engine": {"distill": {"epochs": 20}}}}
    )
    outcome = train_table(job)
    assert outcome["version"] == "1" and outcome["promoted"] and champion() == "1"
    run = mlflow_client().get_run(outcome["run_id"])
    assert run.data.tags["mlflow.source.name"] == "prefect flow train-table"
    assert run.data.params["engine.distill.epochs"] == "20" and run.data.params["label_column"] == "label"
