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
    assert (
        "Champion v2 was not scored on these rows" in unsupervised and "## Gate verdict: KEEP CHAMPION" in unsupervised
    )


def test_a_series_card_describes_its_window():
    contract = {"kind": "timeseries", "timestamp_column": "ts", "value_columns": ["value"], "series": {"window": 32}}
    teacher = {"kind": "conv_autoencoder", "detectors": ["iforest"]}  # the ensemble's setting, unused here
    card = render_model_card(facts(modality="timeseries", contract=contract, teacher=teacher))
    assert "- teacher: conv_autoencoder\n" in card
    assert "time series: timestamp `ts`, values `value`" in card and "window: 32 points" in card
    assert "each point of a time series" in card


def test_an_image_card_names_the_image_teacher_the_conv_student_and_images_per_second():
    card = render_model_card(
        facts(
            modality="image",
            labels="folders: good/ normal, the others defects",
            contract={"kind": "image", "size": 64, "channels": 3, "min_size": 16},
            teacher={"kind": "backbone", "detectors": [], "auroc": 0.97, "pixel_auroc": 0.9, "params": 683_072},
            student={"hidden": [16, 32], "distill": {"size": 64, "epochs": 15, "weights": None, "reduction": "max"}},
            metrics={
                "auroc": 0.95,
                "pixel_auroc": 0.88,
                "images_per_second": 812.0,
                "params": 5_000,
                "size_bytes": 21_000,
                "fidelity": 0.8,
            },
            champion_version=None,
            champion_metrics=None,
            data_rows=120,
            rows_used=120,
        )
    )
    assert "- teacher: backbone: a frozen ResNet-18's" in card and "683,072 parameters" in card
    assert "held out: image AUROC 0.9700, pixel AUROC 0.9000" in card
    assert "- student: convolutional, channel widths [16, 32], 5,000 parameters" in card
    assert "- distillation: size 64, epochs 15, reduction max\n" in card  # no empty `weights`
    assert "| images/s, one thread | 812 | – |" in card and "| pixel AUROC | 0.8800 | – |" in card
    for tabular_wording in ("rows/s", "rank events", "MLP", "iforest", "numeric features", "training rows"):
        assert tabular_wording not in card, tabular_wording
    assert "- images: 120" in card and "No champion yet" in card and "## Gate verdict: PROMOTE" in card


def test_a_champion_skipped_for_lack_of_labels_is_named_not_called_missing():
    card = render_model_card(facts(champion_metrics=None, promoted=False, labels=None))
    assert "Champion v2 was not scored on these rows: the gate verdict below says why." in card
    assert "none yet" not in card and "## Gate verdict: KEEP CHAMPION" in card
    first = render_model_card(facts(champion_version=None, champion_metrics=None, promoted=False))
    assert "## Gate verdict: NOT PROMOTED" in first
