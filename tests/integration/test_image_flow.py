"""The image flow for real: the CLI, the image contract, MLflow tracking with map overlays, gate, registry, pyfunc."""

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from anomaly_distill.image_pipeline import ImageDetector
from anomaly_distill.textures import write_textures
from flows.cli import main
from tasks.tracking import tracking_uri

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
    assert "images resized to 64×64" in version.description and "scoring" in version.tags["gate_reasons"]
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
