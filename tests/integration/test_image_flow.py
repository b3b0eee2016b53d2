"""The image flow for real: the CLI, the image contract, MLflow tracking with map overlays, gate, registry, pyfunc."""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from PIL import Image

from anomaly_distill.image.image_pipeline import AUTO_TEACHER, ImageDetector
from anomaly_distill.image.textures import write_textures
from flows.cli import main
from stores.live_store import LiveStore
from tasks.tracking import tracking_uri
from tests.integration.ui import SCREENSHOTS, browser, expect, mlflow_ui

NAME = "textures-test"
SETTINGS = "modality:\n  image: {size: 64, teacher_epochs: 5, epochs: 15}\n"


def test_the_image_flow_from_the_cli_registers_a_gated_student_with_overlays_served_by_path_and_bytes(
    workspace, capsys
):
    folder = write_textures(workspace / "textures", normal=40, per_defect=4, size=64)
    (workspace / "image.yaml").write_text(SETTINGS)
    command = ["train", "--modality", "image", "--data", str(folder), "--model-name", NAME, "--config", "image.yaml"]
    assert main(command) == 0
    assert "images/s" in capsys.readouterr().out
    client = MlflowClient(tracking_uri(), tracking_uri())
    version = client.get_model_version(NAME, "1")
    run = client.get_run(version.run_id)
    assert {"auroc", "pixel_auroc", "teacher_auroc", "teacher_pixel_auroc", "images_per_second"} <= set(
        run.data.metrics
    )
    overlays = [f.path for f in client.list_artifacts(version.run_id, "overlays")]
    assert len(overlays) == 6 and all(path.endswith(".png") for path in overlays)
    with Image.open(client.download_artifacts(version.run_id, overlays[0], str(workspace))) as overlay:
        assert min(overlay.size) >= 256  # big enough to see where the map points
    assert "images resized to 64×64" in version.description and "scoring" in version.tags["gate_reasons"]
    params, card = run.data.params, version.description  # the card says what the run's parameters say
    assert not any(key.startswith(("engine.", "segment_column", "live_")) for key in params)  # tabular settings
    assert f"- teacher: {run.data.tags['teacher_kind']}: " in card and run.data.tags["teacher_kind"] == AUTO_TEACHER
    widths, size = json.loads(params["modality.image.student_widths"]), params["modality.image.size"]
    assert f"- student: convolutional, channel widths {widths}" in card and f"size {size}, " in card
    assert f"epochs {params['modality.image.epochs']}" in card and "images/s, one thread" in card
    assert "rows/s" not in card and "MLP" not in card and "weights ," not in card
    info = mlflow.models.get_model_info(f"models:/{NAME}/1")
    assert info.name == f"{NAME}-image-student" and info.signature.inputs.input_names() == ["path", "image"]
    with mlflow_ui(workspace) as ui, browser() as page:  # the card as a user reads it on the version page
        page.goto(f"{ui}/#/models/{NAME}/versions/1")
        expect(page.get_by_text(f"Model card: {NAME} v1")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("images/s, one thread").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "image-card.png"), full_page=True)
    teacher_run = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{version.run_id}' and tags.mlflow.runName = 'teacher'"
    )[0]
    assert teacher_run.data.params["teacher"] == AUTO_TEACHER == "backbone"  # teacher: auto
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    detector = model.unwrap_python_model().detector
    assert isinstance(detector, ImageDetector)
    files = sorted((folder / "hole").glob("*.png"))[:2] + sorted((folder / "good").glob("*.png"))[:2]
    by_path = model.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    by_bytes = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    pd.testing.assert_frame_equal(by_path, by_bytes)
    pd.testing.assert_frame_equal(by_path, detector.predict(pd.DataFrame({"path": [str(f) for f in files]})))

    (folder / "good" / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "1 image problem(s)" in err and "broken.png: unreadable" in err
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]


def _darkened_copy(folder, out):
    from PIL import Image

    for path in sorted((folder / "good").glob("*.png")):
        target = out / "good" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            Image.fromarray((np.asarray(image) * 0.5).astype(np.uint8)).save(target)
    return out


def test_images_are_served_scored_by_folder_and_monitored_for_drift(workspace):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    folder = write_textures(workspace / "textures", normal=30, per_defect=3, size=64)
    settings = "modality:\n  image: {size: 64, teacher: autoencoder, teacher_epochs: 3, epochs: 8}\n"
    (workspace / "image.yaml").write_text(settings)
    train = ["train", "--modality", "image", "--data", str(folder), "--model-name", "served", "--config", "image.yaml"]
    assert main(train) == 0
    assert main(["promote", "--model-name", "served", "--version", "1"]) == 0  # a tiny model: its gate fails
    detector = mlflow.pyfunc.load_model("models:/served/1").unwrap_python_model().detector
    files = sorted((folder / "hole").glob("*.png"))[:2] + sorted((folder / "good").glob("*.png"))[:1]
    upload = [("image", (f.name, f.read_bytes(), "image/png")) for f in files]
    store = LiveStore(str(workspace / "served-store"))
    with TestClient(create_app("served", live_store=store.url, poll_seconds=0)) as client:
        answer = client.post("/score-image", files=upload).json()
        expected = detector.predict(pd.DataFrame({"path": [str(f) for f in files]}))
        assert answer["filenames"] == [f.name for f in files] and answer["model_version"] == "1"
        np.testing.assert_allclose(answer["scores"], expected["score"], atol=1e-5)
        assert (
            np.asarray(answer["maps"]).shape == (3, 64, 64) and answer["is_anomaly"] == expected["is_anomaly"].tolist()
        )
        assert "maps" not in client.post("/score-image", params={"maps": False}, files=upload[:1]).json()
        broken = client.post("/score-image", files=[upload[0], ("image", ("broken.png", b"\x89PNG no", "image/png"))])
        assert broken.status_code == 422 and "broken.png: unreadable" in broken.json()["detail"]
        assert client.post("/score-image", content=b"{}").status_code == 422
        as_json = client.post("/score", json=[{"path": str(files[0])}])
        assert as_json.status_code == 422 and "/score-image" in as_json.json()["detail"]
    with TestClient(create_app("served", live_store=store.url, poll_seconds=0, api_key="k3y")) as guarded:
        assert guarded.post("/score-image", files=upload).status_code == 401
        keyed = guarded.post("/score-image", files=upload[:1], headers={"Authorization": "Bearer k3y"})
        assert keyed.status_code == 200
    logged = store.read()
    assert len(logged) == 5 and {"filename", "sha256", "mean_0", "std_0", "emb_0", "emb_15", "score"} <= set(logged)
    assert "emb_16" not in logged  # one embedding column per channel of the default student's last convolution

    scored_path = workspace / "scored.parquet"
    batch = workspace / "batch-store"
    score = ["score", "--model-name", "served", "--data", str(folder), "--out", str(scored_path)]
    assert main([*score, "--live-store", str(batch)]) == 0
    scored = pd.read_parquet(scored_path)
    assert len(scored) == 30 + 3 * 3 and "emb_0" not in scored
    assert sorted(LiveStore(str(batch)).read()["row_id"]) == sorted(scored["row_id"])  # the same rows, the same ids
    # the version's own scores of those files (a model this small ranks defects no better than chance; the unit
    # test `test_teacher_and_student_find_the_planted_defects_and_where_they_are` checks that a trained one does)
    by_version = detector.predict(pd.DataFrame({"path": scored["path"]}))
    np.testing.assert_allclose(scored["score"], by_version["score"], atol=1e-5)

    dark = _darkened_copy(folder, workspace / "dark")
    monitored = str(workspace / "dark-store")
    dark_score = ["score", "--model-name", "served", "--data", str(dark), "--live-store", monitored]
    assert main(dark_score) == 0
    summary_path = workspace / "drift.json"
    assert main(["drift", "--model-name", "served", "--live-store", monitored, "--json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["drift_detected"] is True and "mean_0" in summary["drifted_columns"]
    assert {"emb_0", "std_0", "score"} <= set(summary["columns"])
    assert summary["retrain_parameters"]["data_path"] == str(folder)  # an image model retrains on its folder
