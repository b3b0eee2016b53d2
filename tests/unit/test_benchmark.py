import json

from benchmarking.benchmark import METHODS
from benchmarking.series_benchmark import ONLINE_METHODS
from flows.cli import main
from tests.conftest import DEMO

KEYS = {
    "dataset",
    "method",
    "auroc",
    "auprc",
    "precision",
    "recall",
    "f1",
    "recall_at_1pct_fpr",
    "fidelity",
    "params",
    "size_bytes",
    "fit_seconds",
    "score_rows_per_second",
}


def test_benchmark_command_on_the_demo_set(tmp_path, capsys):
    out = tmp_path / "thyroid.json"
    assert (
        main(["benchmark", str(DEMO), "--label-column", "label", "--json", str(out), "--throughput-rows", "5000"]) == 0
    )
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == list(METHODS)
    for r in records:
        assert KEYS <= set(r) and r["dataset"] == "thyroid"
        assert 0.5 < r["auroc"] <= 1 and r["score_rows_per_second"] > 0 and r["params"] > 0
    by = {r["method"]: r for r in records}
    # the student ranks rows like its teacher, more closely than the baselines it is compared with do
    assert by["student"]["fidelity"] > max(by["iforest"]["fidelity"], by["ecod"]["fidelity"])
    assert by["student"]["params"] < by["teacher"]["params"]
    printed = capsys.readouterr().out
    assert "| thyroid | student |" in printed and "fidelity" in printed


def test_benchmark_reports_bad_input(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b,label\n1,x,0\n2,y,1\n")
    assert main(["benchmark", str(tmp_path / "bad.csv"), "--label-column", "label"]) == 2
    assert "non-numeric feature columns: ['b']" in capsys.readouterr().err


def test_bad_settings_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "settings.yaml").write_text("distill: {alpha: 3}\n")
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n2,3,1\n")
    assert (
        main(
            [
                "benchmark",
                str(tmp_path / "d.csv"),
                "--label-column",
                "label",
                "--config",
                str(tmp_path / "settings.yaml"),
            ]
        )
        == 2
    )
    assert "alpha" in capsys.readouterr().err


def synthetic_series(folder, n=2000, seed=0):
    """A daily-ish cycle with noise and two labelled faults in the test period (a spike burst and a level drop)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=n, freq="5min")
    values = np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.05, n)
    values[1300:1320] += rng.normal(0, 2.0, 20)
    values[1700:1750] -= 2.5
    path = folder / "plant" / "sensor.csv"
    path.parent.mkdir()
    pd.DataFrame({"timestamp": stamps.astype(str), "value": values}).to_csv(path, index=False)
    windows = {"plant/sensor.csv": [[str(stamps[1295]), str(stamps[1330])], [str(stamps[1695]), str(stamps[1760])]]}
    (folder / "labels.json").write_text(json.dumps(windows))
    return path


def series_benchmark_args(tmp_path, paths, out, throughput_rows: int) -> list[str]:
    """The series benchmark at window 16 with the fast.yaml and series.yaml in tmp_path."""
    files = " ".join(map(str, paths))
    return (
        f"benchmark --modality timeseries {files} --labels {tmp_path / 'labels.json'} --window 16 "
        f"--config {tmp_path / 'fast.yaml'} --series-config {tmp_path / 'series.yaml'} "
        f"--throughput-rows {throughput_rows} --json {out}"
    ).split()


def test_series_benchmark_command_has_the_tabular_keys_plus_event_metrics(tmp_path, capsys):
    from benchmarking.series_benchmark import METHODS as SERIES_METHODS

    path = synthetic_series(tmp_path)
    (tmp_path / "fast.yaml").write_text("teacher: {epochs: 5}\ndistill: {epochs: 60}\n")
    (tmp_path / "series.yaml").write_text("teacher: ensemble\ndistill_rows: 5000\n")
    out = tmp_path / "series.json"
    assert main(series_benchmark_args(tmp_path, [path], out, throughput_rows=5000)) == 0
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == list(SERIES_METHODS)
    choice = "the only candidate (no labelled anomalies in the validation period to choose by)"
    assert {(r["teacher_kind"], r["teacher_choice"]) for r in records} == {("ensemble", choice)}
    for r in records:
        assert KEYS | {"event_recall", "false_alarms_per_day", "mean_delay_minutes"} <= set(r)
    by = {r["method"]: r for r in records}
    assert by["teacher"]["auroc"] > 0.8 and by["student"]["fidelity"] > 0.8
    assert by["student"]["event_recall"] == 1.0 and by["student"]["mean_delay_minutes"] >= 0
    assert "| sensor | student |" in capsys.readouterr().out


def test_series_benchmark_needs_label_windows_for_the_file(tmp_path, capsys):
    path = synthetic_series(tmp_path)
    assert main(["benchmark", "--modality", "timeseries", str(path)]) == 2
    assert "needs --labels" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"elsewhere/x.csv": []}))
    assert main(["benchmark", "--modality", "timeseries", str(path), "--labels", str(tmp_path / "other.json")]) == 2
    assert "no series could be evaluated" in (err := capsys.readouterr().err)
    assert "sensor.csv: " in err and "no label windows for plant/sensor.csv" in err


def test_series_benchmark_skips_series_it_cannot_evaluate_and_says_why(tmp_path, capsys):
    import pandas as pd

    path = synthetic_series(tmp_path)
    (tmp_path / "plant" / "short.csv").write_text(pd.read_csv(path).head(100).to_csv(index=False))
    early = pd.read_csv(path)  # its only anomaly lies in the training period
    early.to_csv(tmp_path / "plant" / "early.csv", index=False)
    windows = json.loads((tmp_path / "labels.json").read_text())
    windows["plant/early.csv"] = [[early["timestamp"][100], early["timestamp"][150]]]
    windows["plant/short.csv"] = [[early["timestamp"][80], early["timestamp"][90]]]
    (tmp_path / "labels.json").write_text(json.dumps(windows))
    (tmp_path / "fast.yaml").write_text("teacher: {epochs: 5}\ndistill: {epochs: 30}\n")
    (tmp_path / "series.yaml").write_text("teacher: ensemble\ndistill_rows: 3000\n")
    out = tmp_path / "out.json"
    paths = [path, tmp_path / "plant" / "short.csv", tmp_path / "plant" / "early.csv"]
    assert main(series_benchmark_args(tmp_path, paths, out, throughput_rows=2000)) == 0
    assert {r["dataset"] for r in json.loads(out.read_text())} == {"sensor"}
    printed = capsys.readouterr().out
    assert "- short.csv: " in printed and "fewer than the 200 needed" in printed
    assert "- early.csv: the test period (last 50%) holds no labelled anomaly" in printed


def test_series_benchmark_refuses_bad_series_settings(tmp_path, capsys):
    path = synthetic_series(tmp_path)
    (tmp_path / "series.yaml").write_text("window: 2\n")
    labels, series = tmp_path / "labels.json", tmp_path / "series.yaml"
    assert main(f"benchmark --modality timeseries {path} --labels {labels} --series-config {series}".split()) == 2
    assert "window" in capsys.readouterr().err


def test_series_benchmark_keeps_a_repeated_hour_in_file_order_unless_told_strict(tmp_path, capsys):
    import pandas as pd

    path = synthetic_series(tmp_path)
    frame = pd.read_csv(path)
    frame.loc[500, "timestamp"] = frame.loc[499, "timestamp"]  # a clock set back: the same time twice
    frame.to_csv(path, index=False)
    (tmp_path / "fast.yaml").write_text("teacher: {epochs: 5}\ndistill: {epochs: 30}\n")
    (tmp_path / "series.yaml").write_text("teacher: ensemble\ndistill_rows: 3000\n")
    common = [
        "benchmark",
        "--modality",
        "timeseries",
        str(path),
        "--labels",
        str(tmp_path / "labels.json"),
        "--window",
        "16",
        "--config",
        str(tmp_path / "fast.yaml"),
        "--series-config",
        str(tmp_path / "series.yaml"),
        "--throughput-rows",
        "2000",
    ]
    assert main(common) == 0
    assert main(common + ["--timestamp-policy", "strict"]) == 2
    assert "1 duplicate timestamps, e.g. row 501" in capsys.readouterr().err


def test_nab_protocol_fits_on_the_probationary_period_and_writes_nab_results(tmp_path, capsys):
    import pandas as pd

    path = synthetic_series(tmp_path)  # 2,000 points: probation = 300 points, both faults after it
    (tmp_path / "fast.yaml").write_text("teacher: {epochs: 5}\ndistill: {epochs: 30}\n")
    (tmp_path / "series.yaml").write_text("distill_rows: 3000\n")
    (tmp_path / "online.yaml").write_text("student_epochs: 20\nrefresh_every: 500\n")
    out, results = tmp_path / "nab.json", tmp_path / "results"
    args = series_benchmark_args(tmp_path, [path], out, throughput_rows=2000)
    args += ["--online-config", str(tmp_path / "online.yaml")]
    assert main([*args, "--protocol", "nab", "--nab-results", str(results), "--seeds", "0", "1"]) == 0
    records = json.loads(out.read_text())
    assert {(r["seed"], r["protocol"]) for r in records} == {(0, "nab"), (1, "nab")}
    online = [r for r in records if r["method"].startswith("online-")]
    assert {(r["seed"], r["method"]) for r in online} == {(s, m) for s in (0, 1) for m in ONLINE_METHODS}
    assert all(r["refreshes"] == 4 and r["score_rows_per_second"] > 0 for r in online)  # at 50, 550, 1050, 1550
    records = [r for r in records if r not in online]
    # fit on the first 300 points only ("auto" means the label-free ensemble), scored on the other 1,700
    assert {r["n_train"] for r in records} == {300 - 16 + 1} and {r["n_test"] for r in records} == {1700}
    assert {r["teacher_kind"] for r in records} == {"ensemble"}
    assert (results / "student-seed1" / "plant" / "student-seed1_sensor.csv").is_file()
    student = pd.read_csv(results / "student" / "plant" / "student_sensor.csv")
    assert list(student.columns) == ["timestamp", "value", "anomaly_score", "label"] and len(student) == 2000
    assert student["anomaly_score"].between(0, 1).all() and (student["anomaly_score"][:300] == 0).all()
    assert student["label"].sum() == (1330 - 1295 + 1) + (1760 - 1695 + 1)
    online_scores = pd.read_csv(results / "online-student" / "plant" / "online-student_sensor.csv")["anomaly_score"]
    assert online_scores.between(0, 1).all() and (online_scores[:300] == 0).all() and online_scores[300:].max() > 0
    printed = capsys.readouterr().out
    assert "| student |" in printed and "reward_low_FP_rate" in printed and "| online-student | " in printed
    assert "online student within 2 of its teacher on standard" in printed


def test_seeds_run_every_set_per_seed_against_the_chosen_baselines(tmp_path, capsys):
    (tmp_path / "fast.yaml").write_text("distill: {epochs: 10, min_rows: 2000}\n")
    out = tmp_path / "full.json"
    args = f"benchmark {DEMO} --label-column label --config {tmp_path / 'fast.yaml'} --seeds 0 1 --json {out}"
    assert main([*args.split(), "--baselines", "iforest", "ecod", "hbos", "--throughput-rows", "2000"]) == 0
    records = json.loads(out.read_text())
    assert {(r["seed"], r["method"]) for r in records} == {
        (s, m) for s in (0, 1) for m in ("teacher", "student", "iforest", "ecod", "hbos")
    }
    # the two seeds split differently; only the methods the speed targets compare are timed
    by = {(r["seed"], r["method"]): r for r in records}
    assert by[0, "student"]["auroc"] != by[1, "student"]["auroc"]
    assert by[0, "hbos"]["score_rows_per_second"] is None and by[0, "iforest"]["score_rows_per_second"] > 0
    printed = capsys.readouterr().out
    assert "| student win/tie/loss |" in printed and "| thyroid | " in printed and "fidelity >= 0.97 on" in printed


def test_seeds_summary_with_one_baseline(tmp_path, capsys):
    (tmp_path / "fast.yaml").write_text("distill: {epochs: 5, min_rows: 1000}\n")
    args = f"benchmark {DEMO} --label-column label --config {tmp_path / 'fast.yaml'} --seeds 0"
    assert main([*args.split(), "--baselines", "hbos", "--throughput-rows", "1000"]) == 0
    assert "per-set better of  nan" not in (printed := capsys.readouterr().out) and "| hbos |" in printed
