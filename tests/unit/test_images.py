"""Images: the generated textures, the image contract, the ResNet weights file, and teacher → student → ONNX."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from anomaly_distill.config import ImageConfig
from anomaly_distill.contract import ImageContract
from anomaly_distill.detector import Detector, load_detector, save_detector
from anomaly_distill.errors import DataError
from anomaly_distill.export import OnnxScorer
from anomaly_distill.image.image_data import (
    check_image_bytes,
    check_images,
    digits_set,
    image_files,
    list_images,
    load_image_set,
    write_digits,
)
from anomaly_distill.image.image_pipeline import (
    AUTO_TEACHER,
    TEACHER_KINDS,
    ImageDetector,
    choice_signals,
    chosen_kind,
    distill_image_student,
    elastic_copies,
    evaluate_images,
    fit_teacher,
    rearranged_copies,
    split_images,
    synthetic_defects,
    train_image_teacher,
    turned_copies,
    with_density,
)
from anomaly_distill.image.textures import FAMILIES, TINT, make_image, write_textures
from anomaly_distill.models.images import (
    BackboneTeacher,
    FeatureDensity,
    ImageStandardiser,
    ImageStudentNet,
    ResNet18,
    image_score,
    load_backbone,
    params,
)

FAST = ImageConfig(size=64, teacher="autoencoder", teacher_epochs=10, epochs=40)


def test_textures_are_deterministic_and_masks_mark_exactly_the_defects():
    image, mask = make_image(7, "hole", 64)
    again, _ = make_image(7, "hole", 64)
    np.testing.assert_array_equal(image, again)
    normal, empty = make_image(7, None, 64)
    assert mask.any() and not empty.any()
    assert np.abs(image - normal)[mask].mean() > 0.2 and np.abs(image - normal)[~mask].max() == 0


def test_a_texture_folder_loads_with_labels_and_masks(tmp_path):
    write_textures(tmp_path, normal=6, per_defect=2, size=64)
    data = load_image_set(tmp_path, 32, 3, 16)
    assert data.images.shape == (12, 3, 32, 32) and data.labels.tolist() == [0] * 6 + [1] * 6
    assert data.masks is not None and data.masks[data.labels == 1].any(axis=(1, 2)).all()
    assert not data.masks[data.labels == 0].any()


def test_the_image_contract_names_every_failing_file_and_loads_nothing(tmp_path):
    write_textures(tmp_path, normal=4, per_defect=1, size=64)
    (tmp_path / "good" / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "good" / "tiny.png")
    (tmp_path / "good" / "copy.png").write_bytes((tmp_path / "good" / "0000.png").read_bytes())
    with pytest.raises(DataError) as error:
        load_image_set(tmp_path, 32, 3, 16)
    text = str(error.value)
    assert text.startswith("3 image problem(s)")
    assert "broken.png: unreadable" in text and "tiny.png: 8x8 is smaller than the minimum 16x16" in text
    assert "copy.png: duplicate of" in text and "0000.png" in text


def test_a_colour_image_is_refused_by_a_grey_model(tmp_path):
    write_textures(tmp_path, normal=2, per_defect=0, size=32)
    with pytest.raises(DataError, match="3 channel"):
        load_image_set(tmp_path, 32, 1, 16)


def test_a_manifest_lists_paths_and_labels(tmp_path):
    write_textures(tmp_path, normal=2, per_defect=1, size=32)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": ["good/0000.png", "hole/0000.png"], "label": [0, 1]}).to_csv(manifest, index=False)
    paths, labels = list_images(manifest)
    assert paths == [tmp_path / "good/0000.png", tmp_path / "hole/0000.png"] and labels.tolist() == [0, 1]
    pd.DataFrame({"path": ["good/0000.png"], "label": [2]}).to_csv(manifest, index=False)
    with pytest.raises(DataError, match="label must be 0 or 1; row 1 "):
        list_images(manifest)


def test_a_weights_file_in_torchvision_layout_loads_into_the_backbone(tmp_path):
    torch.manual_seed(123)
    saved = ResNet18()
    names = set(saved.state_dict())
    assert {"conv1.weight", "layer2.0.downsample.0.weight", "layer3.1.bn2.running_var", "fc.bias"} <= names
    torch.save(saved.state_dict(), tmp_path / "resnet18.pth")
    loaded = load_backbone(str(tmp_path / "resnet18.pth"), seed=0)
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_backbone(str(tmp_path / "partial.pth"), seed=0)


def test_the_default_student_is_at_most_a_twentieth_of_either_teacher(texture_model):
    """Sizes of the models the pipeline builds from the default settings, so a wider default student fails."""
    teacher, student, _ = texture_model
    defaults = ImageConfig()
    default_student = params(ImageStudentNet(defaults.channels, tuple(defaults.student_widths)))
    assert student.n_params == params(ImageStudentNet(FAST.channels, tuple(FAST.student_widths)))
    assert default_student * 20 <= teacher.n_params  # the trained autoencoder teacher
    assert default_student * 20 <= BackboneTeacher(ResNet18()).n_params


def test_synthetic_defects_change_part_of_each_image_only():
    images = torch.rand(4, 3, 32, 32)
    damaged = synthetic_defects(images, 2, seed=0)
    assert damaged.shape == (8, 3, 32, 32)
    changed = (damaged != images.repeat(2, 1, 1, 1)).any(dim=1).float().mean(dim=(1, 2))
    assert ((changed > 0) & (changed < 0.5)).all()
    assert synthetic_defects(images, 0, seed=0).shape == (0, 3, 32, 32)  # `synthetic_per_image: 0` distils without


def test_rearranged_copies_are_made_of_training_quarters_in_new_places():
    images = torch.arange(4 * 16 * 16, dtype=torch.float32).reshape(4, 1, 16, 16)  # every pixel value unique
    copies = rearranged_copies(images, 3, seed=0)
    assert copies.shape == (12, 1, 16, 16)
    assert not torch.equal(copies, images.repeat(3, 1, 1, 1))
    quarters = {
        tuple(quarter.rot90(turns, dims=(0, 1)).flip(-1).flatten().tolist())
        if mirror
        else tuple(quarter.rot90(turns, dims=(0, 1)).flatten().tolist())
        for image in images[:, 0]
        for quarter in (image[:8, :8], image[:8, 8:], image[8:, :8], image[8:, 8:])
        for turns in range(4)
        for mirror in (False, True)
    }
    for copy in copies[:, 0]:
        for quarter in (copy[:8, :8], copy[:8, 8:], copy[8:, :8], copy[8:, 8:]):
            assert tuple(quarter.flatten().tolist()) in quarters
    assert torch.equal(copies, rearranged_copies(images, 3, seed=0))  # seeded
    assert rearranged_copies(images, 0, seed=0).shape == (0, 1, 16, 16)


def test_turned_copies_are_whole_training_images_in_one_of_their_seven_other_orientations():
    images = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(4, 1, 8, 8)  # every pixel value unique
    copies = turned_copies(images, 3, seed=0)
    assert copies.shape == (12, 1, 8, 8)
    for k, copy in enumerate(copies):
        source = images[k % 4, 0]
        orientations = [source.rot90(turns, dims=(0, 1)) for turns in range(4)]
        orientations += [o.flip(-1) for o in orientations]
        matches = [i for i, o in enumerate(orientations) if torch.equal(copy[0], o)]
        assert matches and matches != [0]  # one of the other seven, never the image as it is
    assert len({tuple(c.flatten().tolist()) for c in copies}) > 4  # not one orientation for all
    assert torch.equal(copies, turned_copies(images, 3, seed=0))  # seeded
    assert turned_copies(images, 0, seed=0).shape == (0, 1, 8, 8)


@pytest.fixture(scope="module")
def texture_model(tmp_path_factory):
    folder = write_textures(tmp_path_factory.mktemp("textures"), normal=60, per_defect=6, size=64)
    train, test = split_images(load_image_set(folder, FAST.size, FAST.channels, FAST.min_size), FAST)
    teacher = train_image_teacher(train, FAST)
    return teacher, distill_image_student(teacher, train, FAST), test


def test_teacher_and_student_find_the_planted_defects_and_where_they_are(texture_model):
    teacher, student, test = texture_model
    result = evaluate_images(teacher, student, test, FAST)
    assert result["teacher"]["auroc"] > 0.8 and result["student"]["auroc"] > 0.7
    assert result["teacher"]["pixel_auroc"] > 0.9 and result["student"]["pixel_auroc"] > 0.8
    assert np.mean(student.score_images(test.images[test.labels == 0]) > student.threshold) < 0.3


def test_the_image_detector_saves_loads_scores_files_and_bytes_and_exports_with_parity(texture_model, tmp_path):
    _, student, test = texture_model
    back = load_detector(save_detector(student, tmp_path / "detector.pt"))
    np.testing.assert_array_equal(back.score_images(test.images), student.score_images(test.images))
    paths = []
    for i, image in enumerate(test.images[:5]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(paths[-1])
    by_path = student.predict(pd.DataFrame({"path": [str(p) for p in paths]}))
    by_bytes = student.predict(pd.DataFrame({"image": [p.read_bytes() for p in paths]}))
    pd.testing.assert_frame_equal(by_path, by_bytes)
    np.testing.assert_allclose(by_path["score"], student.score_images(test.images[:5]), atol=0.05)
    with pytest.raises(DataError, match="column `path`"):
        student.predict(pd.DataFrame({"file": ["x.png"]}))
    assert isinstance(student, Detector) and student.history
    onnx = OnnxScorer(student.export_onnx(tmp_path / student.onnx_name))
    scores, maps = onnx.session.run(None, {"images": test.images})
    np.testing.assert_allclose(scores, student.score_images(test.images), atol=1e-4)
    np.testing.assert_allclose(maps, student.maps(test.images), atol=1e-4)
    assert onnx.metadata["kind"] == "image" and onnx.metadata["size"] == 64


def test_standardised_images_lose_their_own_brightness_and_contrast_and_off_is_the_identity():
    torch.manual_seed(0)
    images = 0.5 + 0.1 * torch.randn(6, 3, 16, 16)
    standardiser = ImageStandardiser.fitted(images)
    flat = images.flatten(1)
    assert float(standardiser.brightness) == pytest.approx(float(flat.mean(1).median()))
    assert float(standardiser.contrast) == pytest.approx(float(flat.std(1).median()))
    relit = 0.2 + 0.6 * images  # the same scenes, darker and flatter
    torch.testing.assert_close(standardiser(relit), standardiser(images), atol=1e-5, rtol=0)
    out = standardiser(relit).flatten(1)
    torch.testing.assert_close(out.mean(1), torch.full((6,), float(standardiser.brightness)), atol=1e-5, rtol=0)
    assert torch.equal(ImageStandardiser()(relit), relit)


def test_a_standardising_student_keeps_it_through_save_load_and_onnx_and_an_old_one_loads_without(tmp_path):
    images = torch.rand(8, 1, 32, 32).numpy()
    net = ImageStudentNet(1, (4, 8), ImageStandardiser(0.3, 0.2), size=32).eval()
    student = ImageDetector(net, 32, 1, 0.0)
    back = load_detector(save_detector(student, tmp_path / "detector.pt"))
    np.testing.assert_array_equal(back.score_images(images), student.score_images(images))
    np.testing.assert_allclose(student.score_images(images * 0.5 + 0.1), student.score_images(images), atol=1e-5)
    onnx = OnnxScorer(student.export_onnx(tmp_path / student.onnx_name))
    np.testing.assert_allclose(onnx.session.run(None, {"images": images})[0], student.score_images(images), atol=1e-4)
    saved = student.state()
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if not k.startswith("standardiser.")}
    assert float(ImageDetector.from_state(saved).net.standardiser.contrast) == 0  # saved before the setting: off


def test_the_feature_density_puts_normal_locations_at_zero_in_units_of_their_spread_and_far_ones_high():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(40, 6, 4, 4, generator=generator) + torch.arange(16.0).view(1, 1, 4, 4)  # a mean per place
    density = FeatureDensity(6, 4).fit(hidden)
    normal = density(hidden)
    assert abs(float(normal.median())) < 1e-5 and abs(float(normal.std()) - 1) < 1e-4
    moved = hidden[:1].clone()
    moved[0, :, 2, 3] += 4.0  # one location's features far from the normal images' there
    assert float(density(moved)[0, 2, 3]) > float(normal.quantile(0.99)) + 1
    assert float(density(moved)[0, 0, 0]) == pytest.approx(float(normal[0, 0, 0]), abs=1e-5)  # the others as before
    by_place = density(hidden[:1] - torch.arange(16.0).view(1, 1, 4, 4) + 15)  # normal values, at the wrong place
    assert float(by_place[0, 0, 0]) > float(normal.quantile(0.99))
    dead = FeatureDensity(6, 4).fit(torch.zeros(5, 6, 4, 4))  # a student whose every hidden unit is off
    assert torch.isfinite(dead(hidden)).all()


@pytest.mark.parametrize("student_map", ["density", "max", "mean"])
def test_a_student_reading_its_feature_density_keeps_it_through_save_load_and_onnx(student_map, tmp_path):
    images = torch.rand(12, 1, 32, 32)
    net = ImageStudentNet(1, (4, 8), size=32).eval().requires_grad_(False)
    distilled = net(images)
    with_density(net, images, student_map)
    density = net.density(net.hidden_and_distilled(images)[0])
    expected = {"density": density, "max": torch.maximum(distilled, density), "mean": (distilled + density) / 2}
    torch.testing.assert_close(net(images), expected[student_map])
    student = ImageDetector(net, 32, 1, 0.0)
    back = load_detector(save_detector(student, tmp_path / "detector.pt"))
    assert back.net.student_map == student_map
    np.testing.assert_array_equal(back.score_images(images.numpy()), student.score_images(images.numpy()))
    onnx = OnnxScorer(student.export_onnx(tmp_path / student.onnx_name))
    np.testing.assert_allclose(
        onnx.session.run(None, {"images": images.numpy()})[0], student.score_images(images.numpy()), atol=1e-4
    )
    saved = student.state()
    del saved["student_map"]
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if not k.startswith("density.")}
    old = ImageDetector.from_state(saved)  # saved before the setting: the distilled map, as then
    assert old.net.student_map == "distilled"
    np.testing.assert_allclose(old.score_images(images.numpy()), image_score(distilled, "topk_mean"), atol=1e-6)


def test_one_pass_gives_the_scores_maps_and_the_drift_features_the_contract_names(texture_model):
    _, student, test = texture_model
    inspected = student.inspect(test.images)
    np.testing.assert_allclose(inspected.scores, student.score_images(test.images), atol=1e-6)
    np.testing.assert_allclose(inspected.maps, student.maps(test.images), atol=1e-6)
    described = student.describe(test.images)
    contract = ImageContract(size=64, channels=3, min_size=16, embedding_dim=student.embedding_dim)
    assert list(described.columns) == [*contract.features, "score", "is_anomaly"]
    assert contract.features[:6] == ["mean_0", "std_0", "mean_1", "std_1", "mean_2", "std_2"]
    np.testing.assert_allclose(described["mean_1"], test.images[:, 1].mean(axis=(1, 2)), rtol=1e-5)
    assert described["is_anomaly"].tolist() == (inspected.scores > student.threshold).tolist()
    assert described.filter(like="emb_").shape[1] == student.embedding_dim == FAST.student_widths[1] == 16


def test_a_folder_to_score_lists_its_images_but_not_their_masks_and_may_repeat_one(tmp_path):
    write_textures(tmp_path, normal=3, per_defect=1, size=32)
    files = image_files(tmp_path)
    assert len(files) == 6 and not any("masks" in f.parts for f in files)
    (tmp_path / "good" / "copy.png").write_bytes(files[0].read_bytes())
    check_images(image_files(tmp_path), 3, 16, duplicates_allowed=True)
    with pytest.raises(DataError, match="duplicate of"):
        check_images(image_files(tmp_path), 3, 16)
    pd.DataFrame({"path": ["good/0000.png"]}).to_csv(tmp_path / "list.csv", index=False)
    assert image_files(tmp_path / "list.csv") == [tmp_path / "good" / "0000.png"]
    assert image_files(files[0]) == [files[0]]
    with pytest.raises(DataError, match="no such folder"):
        image_files(tmp_path / "nowhere")


def test_elastic_copies_bend_each_image_smoothly_and_the_same_way_for_the_same_seed():
    image = make_image(0, None, 32)[0].transpose(2, 0, 1)[None].astype(np.float32)
    images = torch.from_numpy(image).repeat(3, 1, 1, 1)
    bent = elastic_copies(images, 2, seed=0)
    assert bent.shape == (6, 3, 32, 32) and torch.equal(bent, elastic_copies(images, 2, seed=0))
    assert not torch.equal(bent, elastic_copies(images, 2, seed=1))
    change = (bent - images.repeat(2, 1, 1, 1)).abs().mean(dim=(1, 2, 3))
    assert (change > 0.01).all() and bent.min() >= 0 and bent.max() <= 1  # moved pixels, no new values
    assert elastic_copies(images, 0, seed=0).shape == (0, 3, 32, 32)


def test_an_image_declaring_a_huge_size_is_refused_before_it_is_decoded(tmp_path):
    Image.new("1", (8000, 8000)).save(tmp_path / "huge.png")  # 64 megapixels in a few kilobytes
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    problem = check_image_bytes((tmp_path / "huge.png").read_bytes(), 1, 16)
    assert problem == "8000x8000 is over the limit of 40,000,000 pixels"


def test_backbone_training_targets_never_measure_an_image_against_a_bank_that_holds_it(tmp_path):
    torch.manual_seed(0)
    torch.save(ResNet18().state_dict(), tmp_path / "resnet18.pth")
    data = load_image_set(write_textures(tmp_path / "textures", normal=24, per_defect=0, size=32), 32, 3, 16)
    config = ImageConfig(size=32, teacher="backbone", weights=str(tmp_path / "resnet18.pth"), bank_size=5_000)
    teacher = train_image_teacher(data, config)
    images, in_bank = torch.from_numpy(data.images), teacher.in_bank
    naive = teacher.target_maps(images)  # the bank's own images find themselves at distance ~0
    fair = teacher.training_maps(images, np.arange(len(images)))
    assert in_bank.sum() == 12 and naive[in_bank].mean() < -5
    assert abs(float(fair[in_bank].mean() - fair[~in_bank].mean())) < 1
    torch.testing.assert_close(fair[~in_bank], naive[~in_bank])
    copies = torch.cat([images, images])  # a copy is mapped like the image it was made from
    torch.testing.assert_close(teacher.training_maps(copies, np.tile(np.arange(24), 2))[24:], fair)


@pytest.mark.parametrize("defect", FAMILIES["fabric"])
def test_fabric_defects_change_the_weave_inside_their_mask_but_neither_colour_nor_brightness(defect):
    image, mask = make_image(3, defect, 128, "fabric")
    normal, _ = make_image(3, None, 128, "fabric")
    assert 0.005 < mask.mean() < 0.1 and np.array_equal(image[~mask], normal[~mask])
    assert np.abs(image - normal)[mask].mean() > 0.02
    unclipped = mask & (image.max(axis=2) < 1) & (image.min(axis=2) > 0)
    np.testing.assert_allclose(image[unclipped] / image[unclipped][:, :1], np.broadcast_to(TINT, (unclipped.sum(), 3)))
    assert abs(image[mask].mean() - normal[mask].mean()) < 0.02


def test_the_ensemble_teacher_averages_its_members_standardised_maps_and_joins_their_features():
    images = torch.from_numpy(digits_set(0, 16).images[:24])
    config = ImageConfig(size=16, channels=1, teacher_epochs=2, bank_size=500)
    ensemble = fit_teacher("ensemble", images, config)
    autoencoder, backbone = ensemble.members
    expected = (autoencoder.target_maps(images) + backbone.target_maps(images)) / 2
    torch.testing.assert_close(ensemble.target_maps(images), expected)
    assert ensemble.features(images).shape[1] == autoencoder.features(images).shape[1] + 448
    assert ensemble.n_params == autoencoder.n_params + backbone.n_params


def test_the_label_free_signals_score_each_candidate_and_ties_go_to_the_cheaper_one():
    digits = digits_set(3, 16)
    images = torch.from_numpy(digits.images[np.flatnonzero(digits.labels == 0)[:40]])
    signals = choice_signals(images, ImageConfig(size=16, channels=1, teacher_epochs=2, bank_size=500))
    assert set(signals) == set(TEACHER_KINDS) and all(set(v) == {"synthetic", "elastic"} for v in signals.values())
    assert all(0 <= v <= 1 for values in signals.values() for v in values.values())
    tie = {kind: {"synthetic": 0.9} for kind in TEACHER_KINDS}
    assert chosen_kind(tie, "synthetic") == "autoencoder"
    assert chosen_kind({**tie, "ensemble": {"synthetic": 0.95}}, "synthetic") == "ensemble"


def test_auto_is_the_backbone_as_chosen_leave_one_class_out():
    digits = digits_set(3, 16)
    normal = digits.subset(np.flatnonzero(digits.labels == 0)[:20])
    assert train_image_teacher(normal, ImageConfig(size=16, channels=1, bank_size=500)).kind == AUTO_TEACHER
    assert AUTO_TEACHER == "backbone"


def test_a_digits_folder_holds_every_scan_of_the_normal_digit_and_twenty_others(tmp_path):
    paths, labels = list_images(write_digits(tmp_path, normal_digit=3))
    assert (labels == 0).sum() == (digits_set(3).labels == 0).sum() and (labels == 1).sum() == 20
    assert Image.open(paths[0]).size == (32, 32) and Image.open(paths[0]).mode == "L"
