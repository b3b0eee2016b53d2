"""The automated loop never moves backwards: the gate fails closed, a person's decision sticks, versions are not
mixed, promotions do not race, the training key is the model, bad files stop cleanly. Each test is named after
the failure it guards against (all failed on the code before these fixes)."""

import threading

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.tracking import MlflowClient

from anomaly_distill.config import GateConfig
from flows.cli import main
from flows.training import TrainingParameters, training_pipeline
from stores import registry
from tasks.tracking import tracking_uri
from tests.integration.conftest import relocate_workspace, workspace_template

NAME = "trust-test"
FAST = {"engine": {"distill": {"epochs": 20}}, "model_name": NAME, "label_column": "label"}
LENIENT = GateConfig(
    auroc_tolerance=1.0, auprc_tolerance=1.0
)  # any challenger passes: the promotion logic is what is under test


def train(data, seed=0, **overrides):
    engine = {"seed": seed, "distill": {"epochs": 20}}
    return training_pipeline(TrainingParameters(data_path=str(data), **{**FAST, "engine": engine, **overrides}))


@pytest.fixture(scope="module")
def first_version_template(tmp_path_factory, prefect_api):
    """Version 1 (seed 0, the default gate), trained once for this module: most tests start from it."""

    def first(data):
        assert train(data)["promoted"]

    return workspace_template(tmp_path_factory, "trust-v1", first)


@pytest.fixture(scope="module")
def second_version_template(tmp_path_factory, prefect_api, first_version_template):
    """Version 1, then version 2 (seed 1) promoted past it by a lenient gate."""

    def second(data):
        relocate_workspace(first_version_template, data.parent)
        assert train(data, seed=1, gate=LENIENT)["promoted"] and champion() == "2"

    return workspace_template(tmp_path_factory, "trust-v2", second)


@pytest.fixture
def first_version(workspace, thyroid_csv, first_version_template):
    """This test's workspace holds version 1, the champion, as if `train(thyroid_csv)` had just run here."""
    relocate_workspace(first_version_template, workspace)


@pytest.fixture
def second_version(workspace, thyroid_csv, second_version_template):
    """Version 1, then version 2 promoted past it: champion v2."""
    relocate_workspace(second_version_template, workspace)


def client():
    return MlflowClient(tracking_uri(), tracking_uri())


def champion():
    return str(client().get_model_version_by_alias(NAME, "champion").version)


def test_gate_fails_closed_when_the_champion_cannot_be_loaded(first_version, thyroid_csv, monkeypatch):
    load = mlflow.pyfunc.load_model
    attempts = []

    def artifact_store_down(uri, *args, **kwargs):
        if uri == f"models:/{NAME}/1":
            attempts.append(uri)
            raise OSError("artifact store unreachable")
        return load(uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "load_model", artifact_store_down)
    monkeypatch.setattr("tasks.gating.CHAMPION_BACKOFF_SECONDS", 0)  # the attempts are under test, not their pause
    second = train(thyroid_csv, seed=1, gate=LENIENT)
    assert not second["promoted"] and champion() == "1" and len(attempts) == 3
    assert any("champion v1 could not be loaded or scored" in r and "not promoting" in r for r in second["reasons"])
    assert client().get_model_version(NAME, "2").tags["gate"] == "failed"


def test_a_rollback_by_a_person_is_not_undone_by_the_nightly_run(second_version, thyroid_csv, capsys):
    assert main(["rollback", "--model-name", NAME]) == 0 and champion() == "1"
    nightly = train(thyroid_csv, seed=1, gate=LENIENT)  # unchanged data and settings: reuses version 2
    assert nightly["reused_version"] and nightly["version"] == "2"
    assert not nightly["promoted"] and champion() == "1"
    assert any(r.startswith("NOT PROMOTED: v2 was rolled back by a person") for r in nightly["reasons"])
    assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0 and champion() == "2"  # a person may
    assert registry.DEMOTED_TAG not in client().get_model_version(NAME, "2").tags


def test_a_persons_promotion_during_a_run_is_not_overturned(second_version, thyroid_csv, monkeypatch):
    from tasks import gating as t

    gate = t.gate_verdict

    def person_promotes_meanwhile(*args, **kwargs):
        verdict = gate(*args, **kwargs)
        registry.promote(NAME, "1", "a person, while the run was gating")
        return verdict

    monkeypatch.setattr(t, "gate_verdict", person_promotes_meanwhile)
    late = train(thyroid_csv, seed=2, gate=LENIENT)
    assert not late["promoted"] and champion() == "1"
    assert any("after this run started" in r for r in late["reasons"])


def test_a_run_never_brings_back_a_replaced_champion(workspace, thyroid_csv):
    """The drift-event bug: a retrain with an old version's inputs reused it and made it champion again."""
    assert train(thyroid_csv, gate=LENIENT)["promoted"]
    assert train(thyroid_csv, seed=1, gate=LENIENT)["promoted"] and champion() == "2"
    again = train(thyroid_csv, gate=LENIENT)  # version 1's data, settings and code: reused
    assert again["reused_version"] and again["version"] == "1"
    assert not again["promoted"] and champion() == "2"
    assert any("v1 was champion before and was replaced" in r for r in again["reasons"])
    assert any(r.startswith("note: v1 reused") for r in again["reasons"])
    assert registry.champion_history(NAME) == ["1"]


def test_a_champion_moved_in_the_mlflow_ui_is_a_persons_move_and_rollback_returns_to_where_it_was(
    workspace, thyroid_csv
):
    for seed in range(3):
        assert train(thyroid_csv, seed=seed, gate=LENIENT)["promoted"]
    assert champion() == "3" and registry.champion_history(NAME) == ["1", "2"]
    client().set_registered_model_alias(NAME, "champion", "2")  # what the MLflow UI's alias editor does
    nightly = train(thyroid_csv, seed=3, gate=LENIENT)
    assert not nightly["promoted"] and champion() == "2"  # a person's move, noticed: the run defers to it
    assert any("a person moved the champion" in r for r in nightly["reasons"])
    assert registry.last_move(NAME)[0] == registry.PERSON
    assert main(["rollback", "--model-name", NAME]) == 0
    assert champion() == "3"  # back to where the person moved it from, not to v1
    assert registry.DEMOTED_TAG in client().get_model_version(NAME, "2").tags


def test_gate_and_promote_re_gate_when_the_champion_moved_in_between(first_version, thyroid_csv, monkeypatch):
    from tasks import gating as t

    train(thyroid_csv, seed=1, gate=GateConfig(min_auroc=0.99999))  # version 2, not promoted
    gate = t.gate_verdict
    calls = []

    def pipeline_moves_champion_meanwhile(*args, **kwargs):
        verdict = gate(*args, **kwargs)
        if not calls:
            registry.move_champion(NAME, "2", "another run", registry.PIPELINE)
        calls.append(verdict)
        return verdict

    monkeypatch.setattr(t, "gate_verdict", pipeline_moves_champion_meanwhile)
    third = train(thyroid_csv, seed=2, gate=LENIENT)
    assert len(calls) == 2 and calls[0].champion_version == "1" and calls[1].champion_version == "2"
    assert any("champion moved from v1 to v2 during this run; gated again" in r for r in third["reasons"])
    assert third["promoted"] and champion() == "3"
    assert registry.champion_history(NAME) == ["1", "2"]


def test_promotions_at_the_same_moment_are_serialised_and_a_retried_rollback_pops_once(workspace, thyroid_csv):
    for seed in range(3):
        train(thyroid_csv, seed=seed, gate=GateConfig(min_auroc=0.99999) if seed else GateConfig())
    assert champion() == "1"
    barrier = threading.Barrier(2)

    def promote(version):
        barrier.wait()
        registry.promote(NAME, version, "concurrent test")

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("2", "3")]
    [thread.start() for thread in threads]
    [thread.join(120) for thread in threads]
    final = champion()
    other = ({"2", "3"} - {final}).pop()
    assert registry.champion_history(NAME) == ["1", other]
    assert registry.rollback(NAME, expected_from=final) == (final, other)
    assert registry.rollback(NAME, expected_from=final) == (final, other)  # the retry: nothing moves again
    assert champion() == other and registry.champion_history(NAME) == ["1"]


def test_drift_compares_scores_of_the_serving_version_only(workspace, first_version, thyroid_csv):
    from flows.drift import DriftParameters, drift_monitoring

    rows = pd.read_csv(thyroid_csv).drop(columns=["label"]).sample(1500, random_state=0)
    rows.to_csv(workspace / "live.csv", index=False)
    store = str(workspace / "store")
    assert main(["score", "--data", str(workspace / "live.csv"), "--model-name", NAME, "--live-store", store]) == 0
    other_teacher = {"seed": 1, "teacher": {"kind": "autoencoder", "epochs": 5}, "distill": {"epochs": 20}}
    train(thyroid_csv, engine=other_teacher)
    assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0
    summary = drift_monitoring(DriftParameters(model_name=NAME, live_store=store))
    assert summary["model_version"] == "2" and summary["compared"]["rescored_rows"] == 1500
    by_v2 = mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(rows)
    assert summary["anomaly_rate"] == pytest.approx(by_v2["is_anomaly"].mean())


def test_training_key_follows_code_library_versions_and_label_content(tmp_path, monkeypatch):
    from tasks import registration as t

    (tmp_path / "anomaly_distill").mkdir()
    (tmp_path / "anomaly_distill" / "engine.py").write_text("X = 1\n")
    before = t.code_digest(tmp_path)
    (tmp_path / "anomaly_distill" / "engine.py").write_text("X = 2\n")  # an uncommitted edit
    assert t.code_digest(tmp_path) != before
    labels = tmp_path / "labels.json"
    labels.write_text('{"a/b.csv": []}')
    key = t.training_key("data", "{}", str(labels))
    labels.write_text('{"a/b.csv": [["2024-01-01", "2024-01-02"]]}')  # same path, other content
    assert t.training_key("data", "{}", str(labels)) != key
    key = t.training_key("data", "{}")
    monkeypatch.setattr(t, "library_versions", lambda: "torch==9.9")  # another installed torch
    assert t.training_key("data", "{}") != key


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", b"", "the file is empty (0 bytes)"),
        ("latin1.csv", "f0,f1,label\n1,caf\xe9,0\n".encode("latin-1"), "it is not UTF-8 text: byte 0xe9"),
        ("truncated.parquet", None, "cannot be read as parquet"),
        ("twice.csv", b"f0,f0,label\n1,2,0\n3,4,1\n", "columns ['f0'] appear more than once"),
        ("folder.csv", "dir", "is a directory"),
    ],
)
def test_bad_files_stop_with_the_reason_and_no_traceback(workspace, capfd, name, content, message):
    path = workspace / name
    if content == "dir":
        path.mkdir()
    elif content is None:
        pd.DataFrame({"f0": np.arange(2000.0), "f1": np.arange(2000.0)}).to_parquet(workspace / "whole.parquet")
        path.write_bytes((workspace / "whole.parquet").read_bytes()[:400])
    else:
        path.write_bytes(content)
    assert main(["train", "--data", str(path), "--model-name", NAME]) == 2
    out, err = capfd.readouterr()
    assert message in err and "Traceback" not in out + err
    assert client().search_registered_models() == []


def test_series_gate_scores_both_models_on_the_same_points_when_windows_differ(workspace):
    """The champion (window 32) and the challenger (window 16) score the same test points, matched by timestamp;
    before, the champion's fewer scores met the challenger's labels and sklearn raised."""
    from tests.unit.test_benchmark import synthetic_series

    path = synthetic_series(workspace)
    fast = {"teacher": "ensemble", "distill_rows": 3000}
    common = {
        "data_path": str(path),
        "modality": "timeseries",
        "model_name": NAME,
        "label_column": None,
        "labels_path": str(workspace / "labels.json"),
        "engine": {"distill": {"epochs": 20}},
    }
    any_model = GateConfig(
        min_auroc=0.0, min_fidelity=-1.0, auroc_tolerance=1.0, auprc_tolerance=1.0, min_rows_per_second=0
    )
    first = training_pipeline(TrainingParameters(**common, series={**fast, "window": 32}, gate=any_model))
    second = training_pipeline(TrainingParameters(**common, series={**fast, "window": 16}, gate=any_model))
    assert first["promoted"] and second["version"] == "2", first["reasons"]
    compared = [r for r in second["reasons"] if "champion" in r and "AUROC" in r]
    assert compared and compared[0].startswith("pass")
    assert second["promoted"] and champion() == "2"


REGISTRY_DOWN = MlflowException(
    "API request to http://registry:5000/api/2.0/mlflow/registered-models/alias failed with exception "
    "ConnectionError: Max retries exceeded",
    INTERNAL_ERROR,
)


@pytest.mark.parametrize("fault_from", ["gate", "promotion lock"])
def test_registry_unreachable_at_the_alias_reads_stops_with_exit_3_and_moves_nothing(
    workspace, first_version, thyroid_csv, monkeypatch, capfd, fault_from
):
    """It used to read as "no champion": the challenger replaced the champion uncompared, off the history."""
    from tasks import evaluation as t

    down, read = [], MlflowClient.get_model_version_by_alias

    def alias_read(self, name, alias):
        if down:
            down.append(alias)
            raise REGISTRY_DOWN
        return read(self, name, alias)

    def fault_starts(original):
        return lambda *args, **kwargs: (down.append("from now"), original(*args, **kwargs))[1]

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", alias_read)
    if fault_from == "gate":
        monkeypatch.setattr(t, "evaluate", fault_starts(t.evaluate))
    else:
        monkeypatch.setattr(registry, "champion_lock", fault_starts(registry.champion_lock))
    capfd.readouterr()
    # A lenient gate: the promotion-lock case needs a challenger that passes the gate whatever its AUROC and AUPRC
    # against v1 (the AUPRC check is new; a failed gate would never reach the lock and exit 0).
    settings = "engine: {seed: 1, distill: {epochs: 20}}\ngate: {auroc_tolerance: 1.0, auprc_tolerance: 1.0}\n"
    (workspace / "seed1.yaml").write_text(settings)
    argv = ["train", "--data", str(thyroid_csv), "--label-column", "label", "--model-name", NAME]
    assert main([*argv, "--config", str(workspace / "seed1.yaml")]) == 3
    out, err = capfd.readouterr()
    assert "the MLflow model registry at sqlite:///" in err and "did not answer" in err and "Traceback" not in err
    assert len(down) >= 3  # every retry read the alias again and failed
    down.clear()  # the registry answers again
    assert champion() == "1" and registry.champion_history(NAME) == []
    versions = {str(v.version) for v in client().search_model_versions(f"name='{NAME}'")}
    assert versions == ({"1"} if fault_from == "gate" else {"1", "2"})  # v2, if made, is a challenger only


def test_a_promotion_waits_for_the_champion_lock_then_gives_up_with_a_clear_error(workspace):
    with registry.champion_lock(NAME):
        with pytest.raises(TimeoutError, match=f"another promotion held .*{NAME} for over 1 s"):
            with registry.champion_lock(NAME, timeout_seconds=1):
                pass
    with registry.champion_lock(NAME, timeout_seconds=1):  # released: free again at once
        pass


def test_slightly_worse_candidates_cannot_ratchet_quality_down_until_a_person_chooses(
    workspace, thyroid_csv, monkeypatch
):
    """Each 0.008 below the one before: every one passes against the current champion alone."""
    from tasks import gating as t

    auroc = {str(v): 0.9 - 0.008 * (v - 1) for v in range(1, 6)}
    gate = t.gate_verdict
    monkeypatch.setattr(t, "version_metrics", lambda name, version, rows: {"version": version, "auroc": auroc[version]})
    night = iter(auroc)
    monkeypatch.setattr(t, "gate_verdict", lambda c, *a, **k: gate({**c, "auroc": auroc[next(night)]}, *a, **k))
    outcomes = [train(thyroid_csv, seed=seed) for seed in range(5)]
    assert [o["promoted"] for o in outcomes] == [True, True, False, False, False] and champion() == "2"
    refusal = "FAIL: AUROC 0.8840 >= best champion since a person's choice, v1 0.9000 - 0.01 = 0.8900"
    assert refusal in outcomes[2]["reasons"] and registry.best_champion(NAME) == "1"
    assert main(["promote", "--model-name", NAME, "--version", "3"]) == 0  # a person's choice is the new mark
    assert registry.best_champion(NAME) == "3"


@pytest.mark.parametrize("policy", ["compare_reference", "hold"])
def test_an_unlabelled_retrain_is_compared_on_the_champions_labelled_reference_or_held(
    workspace, first_version, thyroid_csv, policy
):
    unlabelled = workspace / "unlabelled.csv"
    pd.read_csv(thyroid_csv).drop(columns=["label"]).to_csv(unlabelled, index=False)
    second = train(
        unlabelled,
        seed=1,
        label_column=None,
        gate=GateConfig(auroc_tolerance=1.0, auprc_tolerance=1.0, unlabelled=policy),
    )
    tags = client().get_model_version(NAME, "2").tags
    if policy == "hold":
        assert not second["promoted"] and champion() == "1" and tags["gate"] == "held"
        assert any(r.startswith("HOLD: no labels in this run (gate.unlabelled: hold)") for r in second["reasons"])
        assert str(client().get_model_version_by_alias(NAME, "challenger").version) == "2"
    else:
        assert second["promoted"] and champion() == "2"
        assert any(r.startswith("pass: AUROC") and "champion v1" in r for r in second["reasons"])
        assert "measured on champion v1's labelled reference snapshot (" in tags["gate_reasons"]
