"""One strict settings tree: an unknown key at any level is an error naming the key and the nearest valid one."""

import re
from functools import reduce

import pytest
import yaml

from anomaly_distill.config import EngineConfig, SeriesConfig, SettingsError, parse_settings
from flows.cli import main
from flows.training import TrainingParameters
from tests.conftest import DEMO


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"gate": {"min_aurok": 0.99}}, "gate.min_aurok: unknown key; did you mean min_auroc?"),
        ({"engine": {"distill": {"epochz": 5}}}, "engine.distill.epochz: unknown key; did you mean epochs?"),
        ({"engine": {"teacher": {"detectors": ["iforest", "lof"]}}}, "engine.teacher.detectors.1: Input should be"),
        ({"series": {"window": 16}}, "series: time-series settings; they need `modality: timeseries`"),
        (
            {"modality": "image", "timestamp_column": "t"},
            "timestamp_column: time-series settings; they need `modality: timeseries`",
        ),
        (
            {"modality": {"kind": "timeseries", "series": {"windw": 16}}},
            "modality.series.windw: unknown key; did you mean window?",
        ),
        (
            {"modality": "timeseries", "series": {"windw": 16}},
            "modality.series.windw: unknown key; did you mean window?",
        ),
        ({"modality": {"kind": "tabular", "window": 16}}, "modality.window: unknown key"),
        ({"modality": {"kind": "images"}}, "modality.kind: must be one of 'tabular', 'timeseries'"),
        ({"epochs": 5}, "epochs: unknown key; it is set as engine.distill.epochs now"),
        ({"modle_name": "x"}, "modle_name: unknown key; did you mean model_name?"),
    ],
)
def test_training_parameters_name_the_bad_key(settings, message):
    with pytest.raises(SettingsError) as error:
        parse_settings(TrainingParameters, settings)
    assert message in str(error.value)


def test_every_engine_knob_is_a_training_parameter():
    params = parse_settings(
        TrainingParameters,
        {"engine": {"teacher": {"detectors": ["iforest"], "max_fit_rows": 500}, "distill": {"noise_scale": 0.5}}},
    )
    assert params.engine.teacher.detectors == ["iforest"] and params.engine.teacher.max_fit_rows == 500
    assert params.engine.distill.noise_scale == 0.5


def test_flow_parameters_refuse_unknown_keys():
    """What a deployment run from the UI or the API goes through before the flow starts."""
    from prefect.exceptions import ParameterTypeError

    from flows.training import training_pipeline

    with pytest.raises(ParameterTypeError, match="min_aurok"):
        training_pipeline.validate_parameters({"params": {"gate": {"min_aurok": 0.9}}})
    assert training_pipeline.validate_parameters({"params": {"gate": {"min_auroc": 0.9}}})


def test_series_and_engine_configs_are_strict():
    with pytest.raises(SettingsError, match="distil: unknown key; did you mean distill"):
        parse_settings(EngineConfig, {"distil": {"epochs": 3}})
    with pytest.raises(SettingsError, match="strid: unknown key; did you mean stride"):
        parse_settings(SeriesConfig, {"strid": 2})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"gate": {"min_aurok": 0.99}}, "gate.min_aurok: unknown key; did you mean min_auroc?"),
        ({"engine": {"distill": {"epochz": 5}}}, "engine.distill.epochz: unknown key; did you mean epochs?"),
        (["not", "a", "mapping"], "must hold a mapping of settings"),
    ],
)
def test_train_with_a_typo_in_config_exits_2_and_runs_nothing(tmp_path, monkeypatch, capsys, config, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--data", str(DEMO), "--config", str(tmp_path / "settings.yaml")]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "settings.yaml"]  # no store, no run


def test_benchmark_with_a_typo_in_config_exits_2(tmp_path, capsys):
    (tmp_path / "bench.yaml").write_text("distill: {epochs: 5}\nteacher: {detector: [iforest]}\n")
    assert main(["benchmark", "x.npz", "--config", str(tmp_path / "bench.yaml")]) == 2
    assert "teacher.detector: unknown key; did you mean detectors?" in capsys.readouterr().err


def test_compression_of_a_series_model_is_refused_by_name():
    with pytest.raises(ValueError, match="engine.student.compress"):
        TrainingParameters(modality={"kind": "timeseries"}, engine={"student": {"compress": "int8"}})
    with pytest.raises(ValueError, match="compress"):
        TrainingParameters(engine={"student": {"compress": "float16"}})


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"modality": {"kind": "timeseries"}, "engine": {"contamination": 0.2, "distill": {"beta": 0.3}}},
            "engine.contamination: a series takes it from series.contamination; "
            "engine.distill.beta: a series takes it from series.hint_weight",
        ),
        ({"modality": {"kind": "image"}, "engine": {"seed": 3}}, "engine.seed: image runs read their own"),
        (
            {"modality": {"kind": "timeseries", "series": {"mode": "online"}}, "engine": {"distill": {"epochs": 5}}},
            "engine.distill.epochs: timeseries runs read their own settings (series.online)",
        ),
    ],
)
def test_an_engine_setting_the_run_would_not_read_is_refused_by_name(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingParameters(**settings)


def test_settings_a_run_reads_are_accepted_for_every_modality():
    assert TrainingParameters(modality={"kind": "timeseries"}, engine={"distill": {"epochs": 5}}).engine.distill.epochs
    assert TrainingParameters(engine={"contamination": 0.2}).engine.contamination == 0.2
    assert TrainingParameters(modality={"kind": "image"}, engine=EngineConfig().model_dump()).modality.image


def test_the_engine_settings_a_series_owns_are_exactly_those_it_overrides():
    """SERIES_OWNS names what `engine_for` overwrites: engine values there never reach the series teacher."""
    import pandas as pd

    from anomaly_distill.config import SERIES_OWNS
    from anomaly_distill.series.series_pipeline import engine_for
    from anomaly_distill.series.timeseries import Series

    series = Series(pd.Series(pd.date_range("2026-01-01", periods=4)), pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}))
    changed = EngineConfig(
        contamination=0.3,
        teacher={"kind": "autoencoder"},
        student={"hidden": [7]},
        distill={"min_rows": 5, "temperature": 9.0, "beta": 0.7, "synthetic": "perturb"},
    )
    made = engine_for(series, SeriesConfig(), changed, "ensemble").model_dump()
    given = changed.model_dump()
    for path, _ in SERIES_OWNS:
        keys = path.split(".")
        assert reduce(dict.get, keys, made) != reduce(dict.get, keys, given), f"{path} reached the series teacher"
    unowned = {"seed": 5, "distill": {"epochs": 3}}
    made = engine_for(series, SeriesConfig(), EngineConfig(**unowned), "ensemble")
    assert made.seed == 5 and made.distill.epochs == 3  # what a series does not own passes through


def test_the_readmes_image_settings_example_is_every_image_setting_at_its_default():
    import re
    from pathlib import Path

    import yaml

    from anomaly_distill.config import GateConfig, ImageConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"Every image setting, with its default.*?```yaml\n(.*?)```", readme, re.S).group(1)
    example = yaml.safe_load(block)
    assert set(example["modality"]["image"]) == set(ImageConfig.model_fields)
    assert ImageConfig(**example["modality"]["image"]) == ImageConfig()
    assert GateConfig(**example["gate"]) == GateConfig()
