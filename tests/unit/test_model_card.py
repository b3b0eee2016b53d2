"""The model card's text from known facts (anomaly_distill/model_card.py)."""

from anomaly_distill.model_card import ModelCard, render_model_card


def facts(**changes) -> ModelCard:
    base = dict(
        model_name="fraud",
        version="3",
        run_id="abc123",
        created="2026-11-30 04:00 UTC",
        modality="tabular",
        data_source="s3://bucket/tx.parquet",
        data_digest="d1g35t",
        data_rows=10_000_000,
        rows_used=500_000,
        train_rows=350_000,
        test_rows=150_000,
        labels="column `label`",
        contract={"kind": "tabular", "features": [f"f{i}" for i in range(15)], "ranges": {"f0": [0, 1]}},
        teacher={"kind": "ensemble", "detectors": ["iforest", "knn"], "auroc": 0.91},
        student={"hidden": [64, 32], "distill": {"alpha": 0.5, "epochs": 150}},
        metrics={"auroc": 0.9012, "fidelity": 0.95, "params": 3201, "size_bytes": 15_000, "rows_per_second": 2.5e6},
        champion_version="2",
        champion_metrics={"auroc": 0.8903, "fidelity": 0.97},
        promoted=True,
        reasons=["pass: AUROC 0.9012 >= champion 0.8903 - 0.01 = 0.8803"],
        contamination=0.05,
        git_commit="0123456789abcdef",
    )
    return ModelCard(**(base | changes))


def test_a_card_has_every_section_and_the_champion_beside_the_version():
    card = render_model_card(facts())
    assert card.startswith("# Model card: fraud v3\n")
    for section in ["Intended use", "Data", "Input contract", "Teacher and student", "Metrics on held-out rows"]:
        assert f"\n## {section}\n" in card
    assert "\n## Gate verdict: PROMOTE\n- pass: AUROC 0.9012 >= champion 0.8903" in card
    assert "| metric | this version | champion (v2) |" in card
    assert "| AUROC | 0.9012 | 0.8903 |" in card and "| parameters | 3,201 | – |" in card
    assert "- teacher: ensemble (iforest, knn); held out: AUROC 0.9100" in card
    assert "15 numeric features: `f0`, " in card and "and 3 more" in card and "ranges checked for 1 columns" in card
    assert "flagged so" not in card and "5.0% of the training rows" in card
    assert "code 0123456789ab" in card


def test_sampling_and_missing_labels_show_as_limitations():
    card = render_model_card(facts())
    assert "10,000,000 in the file, a uniform sample of 500,000 used" in card
    assert "Trained on a sample (500,000 of 10,000,000 rows)" in card
    unsupervised = render_model_card(facts(labels=None, data_rows=500_000, champion_metrics=None, promoted=False))
    assert "labels: none (unsupervised)" in unsupervised and "No labels: AUROC" in unsupervised
    assert "Trained on a sample" not in unsupervised and "uniform sample" not in unsupervised
    assert "No champion was scored on these rows" in unsupervised and "## Gate verdict: KEEP CHAMPION" in unsupervised


def test_a_series_card_describes_its_window():
    contract = {"kind": "timeseries", "timestamp_column": "ts", "value_columns": ["value"], "series": {"window": 32}}
    teacher = {"kind": "conv_autoencoder", "detectors": ["iforest"]}  # the ensemble's setting, unused here
    card = render_model_card(facts(modality="timeseries", contract=contract, teacher=teacher))
    assert "- teacher: conv_autoencoder\n" in card
    assert "time series: timestamp `ts`, values `value`" in card and "window: 32 points" in card
    assert "each point of a time series" in card
