"""Scoring and drift for real: registered champion, live store on disk, Evidently, MLflow, Prefect."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from stores.live_store import LiveStore
from tasks.tracking import RUNS_VIEW, tracking_uri
from tests.integration.conftest import LIVE_MODEL as NAME
from tests.integration.ui import SCREENSHOTS, browser, expect, mlflow_ui


def score(path, store, *extra):
    return main(["score", "--data", str(path), "--model-name", NAME, "--live-store", str(store), *extra])


def drift(store, out, *extra):
    assert main(["drift", "--model-name", NAME, "--live-store", str(store), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_scored_rows_reach_the_output_and_the_live_store(workspace, champion):
    champion = champion.features
    champion.to_csv(workspace / "live.csv", index=False)
    assert score(workspace / "live.csv", workspace / "store", "--out", str(workspace / "scored.parquet")) == 0
    out = pd.read_parquet(workspace / "scored.parquet")
    stored = LiveStore(str(workspace / "store")).read()
    assert len(out) == len(stored) == len(champion)
    assert {"score", "is_anomaly", "model_name", "model_version", "scored_at", "row_id"} <= set(stored.columns)
    assert (stored["model_version"] == "1").all() and stored["is_anomaly"].mean() < 0.2


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing column", "missing ['f2'], unexpected []"),
        ("nan", "column 'f0' has 1 missing, infinite or out-of-range values (|x| > 3.4e+38), e.g. row 4: nan"),
        ("string", "column 'f1' must be numeric; row 5 holds 'high'"),
        ("extra column", "missing [], unexpected ['merchant']"),
    ],
)
def test_bad_scoring_input_is_rejected_and_nothing_is_stored(workspace, champion, case, message, capsys):
    frame = champion.features.copy()
    if case == "missing column":
        frame = frame.drop(columns=["f2"])
    elif case == "nan":
        frame.loc[3, "f0"] = np.nan
    elif case == "string":
        frame = frame.astype({"f1": object})
        frame.loc[4, "f1"] = "high"
    else:
        frame["merchant"] = 1.0
    frame.to_csv(workspace / "bad.csv", index=False)
    assert score(workspace / "bad.csv", workspace / "store") == 2
    assert message in capsys.readouterr().err
    assert LiveStore(str(workspace / "store")).read().empty


def test_a_file_streams_in_batches_and_a_bad_row_deep_in_it_leaves_nothing_behind(workspace, champion, capsys):
    rows = pd.concat([champion.features] * 3, ignore_index=True).head(2_500)
    rows.to_parquet(workspace / "live.parquet", row_group_size=700)
    whole, batched = workspace / "whole.parquet", workspace / "batched.parquet"
    assert score(workspace / "live.parquet", workspace / "one", "--out", str(whole)) == 0
    assert score(workspace / "live.parquet", workspace / "store", "--out", str(batched), "--chunk-rows", "300") == 0
    stored = LiveStore(str(workspace / "store")).read()
    out = pd.read_parquet(batched)
    assert len(out) == len(stored) == 2_500 and out["row_id"].is_unique
    pd.testing.assert_series_equal(out["score"], pd.read_parquet(whole)["score"])
    pd.testing.assert_frame_equal(out[rows.columns], rows)  # in file order

    rows.loc[2_345, "f1"] = np.inf
    rows.to_parquet(workspace / "bad.parquet", row_group_size=700)
    refused = workspace / "refused.csv"
    assert score(workspace / "bad.parquet", workspace / "store", "--out", str(refused), "--chunk-rows", "300") == 2
    assert "e.g. row 2346: inf" in capsys.readouterr().err  # the file's row (1-based), not the batch's
    assert not refused.exists() and not list(workspace.rglob("*.tmp"))  # no output, no half-written part
    assert LiveStore(str(workspace / "store")).read()["row_id"].tolist() == stored["row_id"].tolist()


def test_csv_output_streams_the_same_rows_as_parquet(workspace, champion):
    champion.features.head(900).to_csv(workspace / "live.csv", index=False)
    assert score(workspace / "live.csv", workspace / "a", "--out", str(workspace / "a.csv"), "--chunk-rows", "200") == 0
    assert score(workspace / "live.csv", workspace / "b", "--out", str(workspace / "b.parquet")) == 0
    as_csv, as_parquet = pd.read_csv(workspace / "a.csv"), pd.read_parquet(workspace / "b.parquet")
    np.testing.assert_allclose(as_csv["score"], as_parquet["score"], rtol=1e-6)
    assert as_csv["is_anomaly"].tolist() == as_parquet["is_anomaly"].tolist()


def test_score_explain_adds_an_explanation_for_every_flagged_row_to_output_and_store(workspace, champion):
    champion.features.head(800).to_csv(workspace / "live.csv", index=False)
    out = workspace / "explained.parquet"
    assert score(workspace / "live.csv", workspace / "store", "--out", str(out), "--explain", "3") == 0
    scored = pd.read_parquet(out)
    flagged = scored["is_anomaly"].to_numpy()
    assert flagged.any() and ((scored["explanation"] != "").to_numpy() == flagged).all()
    named = {text.split(" (")[0] for text in scored.loc[flagged, "explanation"]}
    assert named <= set(champion.features.columns)
    assert LiveStore(str(workspace / "store")).read()["explanation"].tolist() == scored["explanation"].tolist()
    plain = workspace / "plain.parquet"
    assert score(workspace / "live.csv", workspace / "store2", "--out", str(plain)) == 0
    assert "explanation" not in pd.read_parquet(plain).columns  # only on request: it costs time
    np.testing.assert_array_equal(pd.read_parquet(plain)["score"], scored["score"])


def test_integer_columns_are_scored_like_the_same_floats(workspace, champion):
    """A CSV column that holds only integers must score, not fail MLflow's schema check."""
    rounded = (champion.features.head(200) * 100).round(0)  # integers beyond 0/1, which MLflow would pass
    rounded.astype({"f0": "int64", "f3": "int64"}).to_csv(workspace / "ints.csv", index=False)
    rounded.to_csv(workspace / "floats.csv", index=False)
    assert score(workspace / "ints.csv", workspace / "a", "--out", str(workspace / "a.csv")) == 0
    assert score(workspace / "floats.csv", workspace / "b", "--out", str(workspace / "b.csv")) == 0
    assert pd.read_csv(workspace / "ints.csv")["f0"].dtype == np.int64
    np.testing.assert_array_equal(pd.read_csv(workspace / "a.csv")["score"], pd.read_csv(workspace / "b.csv")["score"])


def test_drift_report_says_no_drift_then_drift_and_retrains(workspace, champion, capsys):
    labels, champion = champion.labels, champion.features
    champion.to_csv(workspace / "live.csv", index=False)
    assert score(workspace / "live.csv", workspace / "calm", "--out", str(workspace / "scored.csv")) == 0
    scored = pd.read_csv(workspace / "scored.csv")
    pd.DataFrame({"row_id": scored["row_id"], "label": labels}).to_csv(workspace / "labels.csv", index=False)
    assert main(["feedback", "--data", str(workspace / "labels.csv"), "--live-store", str(workspace / "calm")]) == 0
    pd.DataFrame({"row_id": ["nope"], "label": [1]}).to_csv(workspace / "unknown.csv", index=False)
    assert main(["feedback", "--data", str(workspace / "unknown.csv"), "--live-store", str(workspace / "calm")]) == 2
    assert "not in the live store" in capsys.readouterr().err
    calm = drift(workspace / "calm", workspace / "calm.json")
    assert calm["drift_detected"] is False and calm["drifted_columns"] == [] and calm["rows"] == len(champion)
    assert {"drift_share", "score_drift"} <= set(calm)
    live = calm["live_metrics"]
    assert live["labelled_rows"] == len(champion) and live["auroc"] > 0.95 and 0 < live["recall"] <= 1

    shifted = champion.assign(f1=champion["f1"] * 3 + 0.05, f4=champion["f4"] + 0.3)
    shifted.to_csv(workspace / "shifted.csv", index=False)
    assert score(workspace / "shifted.csv", workspace / "shifted", "--out", str(workspace / "shifted_scored.csv")) == 0
    shifted_ids = pd.read_csv(workspace / "shifted_scored.csv")["row_id"]
    pd.DataFrame({"row_id": shifted_ids, "label": labels}).to_csv(workspace / "shifted_labels.csv", index=False)
    assert (
        main(["feedback", "--data", str(workspace / "shifted_labels.csv"), "--live-store", str(workspace / "shifted")])
        == 0
    )
    stormy = drift(workspace / "shifted", workspace / "stormy.json", "--retrain-on-drift")
    assert stormy["drift_detected"] is True
    assert {"f1", "f4"} <= set(stormy["drifted_columns"]) and stormy["drift_share"] >= 2 / 6
    retrained = stormy["retrain"]
    assert retrained["version"] == "2"
    # every live row got its label back, so the retrained model was gated on AUROC against the champion
    assert any("AUROC" in reason and "champion" in reason for reason in retrained["reasons"])

    client = MlflowClient(tracking_uri(), tracking_uri())
    run = client.get_run(stormy["mlflow_run_id"])
    assert run.data.tags["model_version"] == "1" and run.data.metrics["drift_detected"] == 1.0
    assert {"drift_report.html", "drift_summary.json"} <= {f.path for f in client.list_artifacts(run.info.run_id)}
    for summary in (calm, stormy):
        html = client.download_artifacts(summary["mlflow_run_id"], "drift_report.html", str(workspace))
        assert headlines(Path(html).read_text()) == {summary["drift_detected"]}


def headlines(html: str) -> set[bool]:
    """The verdicts the report's headline states (one, if the report agrees with itself)."""
    return {match == "" for match in re.findall(r"Dataset Drift is (NOT )?detected", html)}


def test_the_report_headline_states_the_projects_verdict_when_only_the_score_drifted():
    """Evidently alone said "NOT detected" (share of columns below its threshold) while the project said DRIFT."""
    from tasks.drift import drift_summary

    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(800, 4)), columns=["a", "b", "c", "d"])
    current = pd.DataFrame(rng.normal(size=(800, 4)), columns=["a", "b", "c", "d"])
    reference["score"], current["score"] = rng.normal(size=800), rng.normal(loc=3, size=800)
    reference["is_anomaly"], current["is_anomaly"] = 0, 0
    summary, html = drift_summary(reference, current, ["a", "b", "c", "d"], drift_share_threshold=0.3)
    assert summary["drift_detected"] and summary["score_drifted"] and summary["drift_share"] < 0.3
    assert headlines(html) == {True}
    assert "drift when at least 30% of the features drifted or the anomaly score drifted" in html
    assert f"here {len(summary['drifted_columns'])} of 4 features, and the score drifted" in html


def test_retraining_table_keeps_every_label_given_and_leaves_the_others_empty():
    from tasks.drift import LIVE_ROW, retraining_table

    reference = pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": pd.array([0, 1, None], dtype="Int8"), "score": 0.5})
    live = pd.DataFrame({"a": [4.0, 5.0], "row_id": ["x", "y"]})
    labelled = retraining_table(reference, live, ["a"], pd.Series([1.0, 0.0]))
    assert labelled["label"].fillna(-1).tolist() == [0, 1, -1, 1, 0]  # the snapshot's empty cell stays empty
    assert list(labelled.columns) == ["a", "label", LIVE_ROW]
    partial = retraining_table(reference, live, ["a"], pd.Series([1.0, float("nan")]))
    assert partial["label"].fillna(-1).tolist() == [0, 1, -1, 1, -1]  # an empty cell: not reviewed
    assert partial[LIVE_ROW].tolist() == [0, 0, 0, 1, 1]  # only live rows may be held out for the gate
    unlabelled_reference = retraining_table(reference.drop(columns="label"), live, ["a"], pd.Series([float("nan"), 0]))
    assert unlabelled_reference["label"].fillna(-1).tolist() == [-1, -1, -1, -1, 0]
    nothing = retraining_table(reference.drop(columns="label"), live, ["a"], pd.Series([float("nan")] * 2))
    assert list(nothing.columns) == ["a", LIVE_ROW]  # no row has a label: no label column


@pytest.mark.slow
def test_batch_scoring_on_a_two_worker_dask_cluster_matches_threads(workspace, champion):
    champion.features.to_csv(workspace / "live.csv", index=False)
    assert (
        score(
            workspace / "live.csv",
            workspace / "threads",
            "--out",
            str(workspace / "threads.csv"),
            "--chunk-rows",
            "200",
        )
        == 0
    )
    assert (
        score(
            workspace / "live.csv",
            workspace / "dask",
            "--out",
            str(workspace / "dask.csv"),
            "--chunk-rows",
            "200",
            "--task-runner",
            "dask",
        )
        == 0
    )
    threads, dask = pd.read_csv(workspace / "threads.csv"), pd.read_csv(workspace / "dask.csv")
    np.testing.assert_allclose(dask["score"], threads["score"], rtol=1e-6)
    assert len(LiveStore(str(workspace / "dask")).read()) == len(champion.features)


def test_five_drift_windows_make_a_trend_on_one_monitoring_run_linked_from_the_card(workspace, champion):
    """Each check: its own run in `<model>-monitoring` tagged with the version it judged; its figures are one
    step of the model's monitoring run, every window's equal to its check's; the card links the latest."""
    features = champion.features
    checks = []
    for window, shift in enumerate((0.0, 0.05, 0.1, 0.2, 0.4)):
        features.assign(f1=features["f1"] + shift, f4=features["f4"] + shift).to_csv(workspace / "w.csv", index=False)
        assert score(workspace / "w.csv", workspace / f"store{window}") == 0
        if window < 4:
            checks.append(drift(workspace / f"store{window}", workspace / f"w{window}.json"))
    cli = [str(Path(sys.executable).with_name("anomaly-distill")), "drift", "--model-name", NAME, "--live-store"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri()}
    env.pop("PREFECT_API_URL", None)
    last = subprocess.run(
        [*cli, str(workspace / "store4"), "--json", str(workspace / "w4.json")], capture_output=True, text=True, env=env
    )
    assert last.returncode == 0, last.stderr[-2000:]
    checks.append(json.loads((workspace / "w4.json").read_text()))
    client = MlflowClient(tracking_uri(), tracking_uri())
    experiment = client.get_experiment_by_name(f"{NAME}-monitoring")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'drift'")
    assert {run.info.run_id for run in runs} == {check["mlflow_run_id"] for check in checks}
    assert {run.data.tags["model_version"] for run in runs} == {"1"}
    (trend,) = client.search_runs([experiment.experiment_id], "tags.kind = 'monitoring'")
    for metric in ("drift_share", "score_drift", "rows", "anomaly_rate"):
        history = sorted(client.get_metric_history(trend.info.run_id, metric), key=lambda point: point.step)
        assert [point.step for point in history] == [0, 1, 2, 3, 4]
        assert [point.value for point in history] == pytest.approx([float(check[metric]) for check in checks])
    shares = [check["drift_share"] for check in checks]
    assert shares[0] == 0 and shares[-1] >= 2 / 6  # the shift grows, and the trend shows it
    card = client.get_model_version(NAME, "1").description
    assert card.count("## Monitoring") == 1 and "latest drift check (window 5)" in card
    assert checks[-1]["mlflow_run_id"] in card and trend.info.run_id in card
    with mlflow_ui(workspace) as ui, browser() as page:  # the chart a user opens
        page.goto(f"{ui}/#/experiments/{experiment.experiment_id}/runs/{trend.info.run_id}/model-metrics{RUNS_VIEW}")
        expect(page.get_by_text("drift_share").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2_000)
        page.screenshot(path=str(SCREENSHOTS / "monitoring-trend.png"), full_page=True)
        newest = checks[-1]  # its report in MLflow's artifact preview, beside the verdict the CLI printed
        page.goto(f"{ui}/#/experiments/{experiment.experiment_id}/runs/{newest['mlflow_run_id']}/artifacts{RUNS_VIEW}")
        page.get_by_text("drift_report.html").first.click()
        report = page.frame_locator("iframe").first
        drifted = f"{len(newest['drifted_columns'])} of 6 features"
        expect(report.get_by_text(drifted, exact=False).first).to_be_visible(timeout=60_000)
        expect(report.get_by_text("Share of Drifted Columns").first).to_be_visible()
        page.wait_for_timeout(1_000)
        page.screenshot(path=str(SCREENSHOTS / "drift-report-in-mlflow.png"))
        verdict = next(line for line in last.stderr.splitlines() if f"{NAME} v1: DRIFT (share" in line)
        (SCREENSHOTS / "drift-report-in-mlflow.txt").write_text(verdict + "\n")  # the CLI's words, kept beside it
        assert f"share {newest['drift_share']:.2f}" in verdict
