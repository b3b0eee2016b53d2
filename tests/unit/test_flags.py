"""CLI flags generated from the settings models: every field a flag, the defaults the model's only."""

import argparse

import pytest

from flows.cli import TRAIN_NESTED, build_parser, main
from flows.flags import add_flags, flag_values
from flows.parameters import DriftParameters, ScoringParameters
from flows.training_parameters import TrainingParameters
from serving.settings import ServeParameters


def flags_of(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {option for action in sub._actions for option in action.option_strings}


@pytest.mark.parametrize("command, model", [("serve-api", ServeParameters), ("drift", DriftParameters)])
def test_every_setting_of_the_model_is_a_flag(command, model):
    expected = {"--" + name.replace("_", "-") for name in model.model_fields}
    assert expected <= flags_of(command)


def test_a_flag_not_given_keeps_the_models_default_and_a_given_one_is_typed():
    parser = argparse.ArgumentParser()
    add_flags(parser, ServeParameters)
    assert flag_values(ServeParameters, parser.parse_args([])) == {}
    given = flag_values(ServeParameters, parser.parse_args(["--port", "9000", "--no-wal-sync", "--live-store", "s"]))
    assert given == {"port": 9000, "wal_sync": False, "live_store": "s"}
    serve = ServeParameters(**given)
    assert serve.max_body_bytes == ServeParameters.model_fields["max_body_bytes"].default
    assert set(serve.app_settings()) == set(ServeParameters.model_fields) - {"host", "port", "workers"}


def test_a_value_the_model_refuses_exits_2_with_the_setting_named(capsys):
    assert main(["serve-api", "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err
    assert main(["drift", "--drift-share-threshold", "2"]) == 2
    assert "drift_share_threshold" in capsys.readouterr().err


def test_the_app_takes_the_same_settings_and_refuses_an_unknown_one():
    from serving.app import create_app

    with pytest.raises(ValueError, match="poll_secs"):
        create_app("m", poll_secs=1)
    with pytest.raises(TypeError, match="uvicorn"):
        create_app("m", port=1)


def test_score_flags_come_from_the_scoring_parameters_under_their_short_names(capsys):
    renamed = {"data_path": "--data", "out_path": "--out"}
    expected = {renamed.get(name, "--" + name.replace("_", "-")) for name in ScoringParameters.model_fields}
    assert expected | {"--model-name"} <= flags_of("score")
    assert main(["score", "--data", "x.csv", "--model-name", "a", "--model-uri", "models:/b@champion"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["score", "--data", "x.csv", "--chunk-rows", "0"]) == 2
    assert "chunk_rows" in capsys.readouterr().err


def test_train_flags_come_from_the_training_parameters_and_only_given_ones_are_passed():
    expected = {"--data"} | {
        "--" + name.replace("_", "-") for name in TrainingParameters.model_fields if name not in TRAIN_NESTED
    }
    assert expected - {"--data-path"} <= flags_of("train")
    args = build_parser().parse_args(["train", "--data", "x.csv", "--no-check-ranges", "--min-segment-rows", "50"])
    given = {k: v for k, v in flag_values(TrainingParameters, args).items() if k not in TRAIN_NESTED}
    assert given == {"data_path": "x.csv", "check_ranges": False, "min_segment_rows": 50}
    assert TrainingParameters(**given).max_rows_in_memory == TrainingParameters().max_rows_in_memory
