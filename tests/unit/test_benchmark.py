import json

from anomaly_distill.benchmark import METHODS
from flows.cli import main

KEYS = {"dataset", "method", "auroc", "auprc", "precision", "recall", "f1", "recall_at_1pct_fpr", "fidelity",
        "params", "size_bytes", "fit_seconds", "score_rows_per_second"}


def test_benchmark_command_on_glass(adbench, tmp_path, capsys):
    out = tmp_path / "glass.json"
    assert main(["benchmark", str(adbench / "14_glass.npz"), "--json", str(out), "--throughput-rows", "5000"]) == 0
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == list(METHODS)
    for r in records:
        assert KEYS <= set(r) and r["dataset"] == "14_glass"
        assert 0.5 < r["auroc"] <= 1 and r["score_rows_per_second"] > 0 and r["params"] > 0
    by = {r["method"]: r for r in records}
    assert by["teacher"]["fidelity"] == 1.0
    assert by["student"]["fidelity"] > 0.9
    assert by["student"]["params"] < by["teacher"]["params"]
    printed = capsys.readouterr().out
    assert "| 14_glass | student |" in printed and "fidelity" in printed


def test_benchmark_reports_bad_input(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b,label\n1,x,0\n2,y,1\n")
    assert main(["benchmark", str(tmp_path / "bad.csv"), "--label-column", "label"]) == 2
    assert "non-numeric feature columns: ['b']" in capsys.readouterr().err


def test_bad_settings_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "settings.yaml").write_text("distill: {alpha: 3}\n")
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n2,3,1\n")
    assert main(["benchmark", str(tmp_path / "d.csv"), "--label-column", "label",
                 "--config", str(tmp_path / "settings.yaml")]) == 2
    assert "alpha" in capsys.readouterr().err
