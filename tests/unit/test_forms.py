"""The short forms (flows/jobs.py): what each shows, what it hides, and the training run each one asks for."""

import jsonschema
import pytest

from flows import jobs
from flows.training import TrainingParameters

JOBS = [
    (jobs.train_table, jobs.TableJob(data_path="t.csv", model_name="fraud")),
    (jobs.train_series, jobs.SeriesJob(data_path="s.csv", model_name="temp")),
    (jobs.train_images, jobs.ImageJob(data_path="imgs", model_name="parts")),
]


def form_schema(flow, job) -> dict:
    """The deployment's form, as `flows/deployments.py` builds it."""
    schema = flow.to_deployment(name="train", parameters={"params": jobs.form_defaults(job)})._parameter_openapi_schema
    return jobs.short_form(schema.model_dump(), type(job))


def fields_before_advanced(schema: dict, job) -> list[str]:
    names = list(schema["definitions"][type(job).__name__]["properties"])
    return names[: names.index("advanced")]


def toggles(schema: dict) -> list[str]:
    """Properties that a Prefect form would show with a type toggle (a choice between types, `None` included)."""
    return [
        f"{model}.{name}"
        for model, definition in schema["definitions"].items()
        for name, prop in definition.get("properties", {}).items()
        if "anyOf" in prop or isinstance(prop.get("type"), list)
    ]


@pytest.mark.parametrize("flow, job", JOBS)
def test_a_short_form_asks_for_data_and_name_first_and_hides_internals_and_toggles(flow, job):
    schema = form_schema(flow, job)
    first = fields_before_advanced(schema, job)
    assert first[0] == "data_path" and "model_name" in first and len(first) <= 12
    assert toggles(schema) == []
    teacher = schema["definitions"].get("TeacherConfig", {}).get("properties", {})
    assert not {"sequence", "member_hints"} & set(teacher)
    assert "synthetic" not in schema["definitions"].get("DistillConfig", {}).get("properties", {})
    parameters = {"params": jobs.form_defaults(job)}
    jsonschema.validate(parameters, {**schema, "type": "object"})  # what the Prefect server checks
    assert type(job).model_validate(parameters["params"]) == job  # hidden settings: their defaults


def test_an_image_form_has_no_engine_and_no_duplicate_settings():
    schema = form_schema(*JOBS[2])
    assert "EngineConfig" not in schema["definitions"] and "label_column" not in schema["definitions"]["ImageJob"]
    image = schema["definitions"]["ImageConfig"]["properties"]
    assert {"seed", "contamination", "test_fraction"} <= set(image)  # once, in the image settings


def test_a_series_form_hides_the_engine_settings_its_series_settings_override():
    engine = form_schema(*JOBS[1])["definitions"]
    assert "contamination" not in engine["EngineConfig"]["properties"]  # series.contamination decides
    assert "kind" not in engine["TeacherConfig"]["properties"]  # series.teacher decides
    assert "compress" not in engine["StudentConfig"]["properties"]  # tables only


def test_each_form_builds_the_training_run_of_its_kind():
    table = jobs.TableJob.model_validate(
        {
            "data_path": "t.csv",
            "advanced": {"segment_column": "merchant", "engine": {"distill": {"class_weight": "2.5"}}},
        }
    ).training()
    assert isinstance(table, TrainingParameters) and table.modality.kind == "tabular"
    assert table.segment_column == "merchant" and table.engine.distill.class_weight == 2.5
    series = jobs.SeriesJob.model_validate(
        {"data_path": "s.csv", "timestamp_column": "ts", "advanced": {"series": {"mode": "online"}}}
    ).training()
    assert series.modality.timestamp_column == "ts" and series.modality.series.mode == "online"
    images = jobs.ImageJob.model_validate({"data_path": "imgs", "advanced": {"image": {"size": 32}}}).training()
    assert images.modality.image.size == 32 and images.label_column is None
    with pytest.raises(ValueError, match="extra"):
        jobs.ImageJob.model_validate({"data_path": "imgs", "engine": {}})  # unknown keys are errors
