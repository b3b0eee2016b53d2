import numpy as np
import pandas as pd
import pytest

from anomaly_distill.data import (
    DataError,
    fit_preprocessor,
    iter_frames,
    load_table,
    read_frame,
    sample_file,
    split_table,
    table_from_frame,
)


def write_csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_loads_csv_parquet_and_npz_alike(tmp_path, small_frame):
    csv = load_table(write_csv(tmp_path, small_frame), "label")
    small_frame.to_parquet(tmp_path / "data.parquet")
    parquet = load_table(tmp_path / "data.parquet", "label")
    np.savez(tmp_path / "data.npz", X=small_frame[["a", "b", "c", "d"]].to_numpy(), y=small_frame["label"].to_numpy())
    npz = load_table(tmp_path / "data.npz")
    for table in (csv, parquet, npz):
        assert table.features.shape == (400, 4)
        assert table.labels.sum() == 20
    np.testing.assert_allclose(csv.features.to_numpy(), npz.features.to_numpy())


def test_label_column_is_optional(tmp_path, small_frame):
    table = load_table(write_csv(tmp_path, small_frame.drop(columns="label")))
    assert table.labels is None and table.features.shape == (400, 4)


@pytest.mark.parametrize(
    "name, frame_edit, label, message",
    [
        ("nan", lambda f: f.assign(b=f["b"].where(f.index != 3)), "label", "NaN or infinite values in columns ['b']"),
        (
            "inf",
            lambda f: f.assign(c=f["c"].replace(f["c"].iloc[5], np.inf)),
            "label",
            "NaN or infinite values in columns ['c']",
        ),
        ("string", lambda f: f.assign(city="Paris"), "label", "non-numeric feature columns: ['city']"),
        (
            "labels",
            lambda f: f.assign(label=f["label"].replace(1, 2)),
            "label",
            "must hold 0 (normal), 1 (anomaly) or an empty cell (not reviewed); found ['2']",
        ),
        ("no label", lambda f: f, "target", "label column 'target' not found"),
        ("single row", lambda f: f.head(1), "label", "single row"),
        ("empty", lambda f: f.head(0), "label", "the table is empty"),
    ],
)
def test_bad_input_is_named(tmp_path, small_frame, name, frame_edit, label, message):
    with pytest.raises(
        DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        load_table(write_csv(tmp_path, frame_edit(small_frame)), label)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_table(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_table(tmp_path / "empty.csv")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_table(tmp_path / "data.xlsx")


def test_too_few_features_after_constant_columns_names_them(small_frame):
    frame = small_frame[["a"]].assign(k1=1.0, k2=-3.0)
    with pytest.raises(DataError, match=r"fewer than 2 features left after dropping constant columns \['k1', 'k2'\]"):
        fit_preprocessor(table_from_frame(frame).features)


def test_preprocessor_uses_training_rows_only_and_round_trips(small_frame):
    table = table_from_frame(small_frame.assign(const=7.0), "label")
    train, test = split_table(table, 0.3, seed=0)
    pre = fit_preprocessor(train.features)
    assert pre.dropped_columns == ["const"] and pre.columns == ["a", "b", "c", "d"]
    np.testing.assert_allclose(pre.center, train.features[pre.columns].median().to_numpy())
    scaled = pre.transform(test.features)
    np.testing.assert_allclose(pre.transform_array(test.features.to_numpy()), scaled)
    back = pre.inverse_transform(scaled)
    np.testing.assert_allclose(back.to_numpy(), test.features.to_numpy(), rtol=1e-5, atol=1e-5)


def test_split_is_stratified_and_deterministic(small_frame):
    table = table_from_frame(small_frame, "label")
    train, test = split_table(table, 0.3, seed=7)
    train2, test2 = split_table(table, 0.3, seed=7)
    pd.testing.assert_frame_equal(test.features, test2.features)
    assert len(test) == 120 and test.labels.sum() == 6 and train.labels.sum() == 14
    _, other = split_table(table, 0.3, seed=8)
    assert not other.features.equals(test.features)


def test_column_names_reads_headers_only(tmp_path, small_frame):
    from anomaly_distill.data import column_names

    small_frame.to_csv(tmp_path / "d.csv", index=False)
    small_frame.to_parquet(tmp_path / "d.parquet")
    np.savez(tmp_path / "d.npz", X=small_frame[["a", "b"]].to_numpy(), y=small_frame["label"].to_numpy())
    assert column_names(tmp_path / "d.csv") == column_names(tmp_path / "d.parquet") == ["a", "b", "c", "d", "label"]
    assert column_names(tmp_path / "d.npz") == ["f0", "f1", "label"]


def test_held_out_rows_come_only_from_the_candidates_when_given():
    """Drift retraining: only live rows may be held out, so the gate never scores a champion on its training rows."""
    from anomaly_distill.data import Table, split_table

    labels = np.r_[np.zeros(180, int), np.ones(20, int)]
    table = Table(pd.DataFrame({"a": np.arange(200.0)}), labels)
    live = np.arange(200) % 2 == 1
    train, test = split_table(table, 0.3, 0, live)
    assert len(test) == 30 and (test.features["a"] % 2 == 1).all() and test.labels.sum() == 3
    assert len(train) == 170 and set(train.features["a"]) | set(test.features["a"]) == set(range(200))
    whole_train, whole_test = split_table(table, 0.3, 0)  # without candidates: as before
    assert len(whole_test) == 60 and whole_test.labels.sum() == 6


def _numbered(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"row": np.arange(rows), "x": rng.normal(size=rows), "label": rng.integers(0, 2, rows)})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_within_the_limit_is_read_whole_and_in_order(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    frame = _numbered(2_000)
    frame.to_parquet(path, row_group_size=300) if suffix == ".parquet" else frame.to_csv(path, index=False)
    sample, profile = sample_file(path, 5_000, seed=0, batch_rows=250)
    pd.testing.assert_frame_equal(sample, read_frame(path))
    assert (profile.rows, profile.sampled, profile.problems()) == (2_000, 2_000, [])


def test_a_larger_file_gives_a_uniform_reproducible_sample_in_file_order(tmp_path):
    path = tmp_path / "t.parquet"
    _numbered(20_000).to_parquet(path, row_group_size=3_000)
    sample, profile = sample_file(path, 2_000, seed=1, batch_rows=700)
    again, _ = sample_file(path, 2_000, seed=1, batch_rows=700)
    other, _ = sample_file(path, 2_000, seed=2, batch_rows=700)
    assert len(sample) == 2_000 and profile.rows == 20_000 and profile.sampled == 2_000
    assert sample["row"].is_monotonic_increasing and sample["row"].is_unique
    pd.testing.assert_frame_equal(sample, again)
    assert not sample["row"].equals(other["row"])
    counts = np.histogram(sample["row"], bins=10, range=(0, 20_000))[0]
    assert counts.min() > 150 and counts.max() < 250  # ~200 from each tenth of the file


def test_the_profile_counts_bad_cells_anywhere_and_names_the_first_row(tmp_path):
    frame = _numbered(5_000).astype({"x": object})
    frame.loc[4_321, "x"], frame.loc[4_500, "x"] = np.nan, np.inf
    frame.loc[3_000, "label"] = None
    frame.loc[1_234, "x"] = "high"
    frame.to_csv(tmp_path / "t.csv", index=False)
    sample, profile = sample_file(tmp_path / "t.csv", 500, seed=0, batch_rows=1_000)
    assert profile.problems() == [
        "column 'x': 1 missing, 1 infinite, 1 text (first in row 1,235)",
        "column 'label': 1 missing (first in row 3,001)",
    ]
    assert profile.problems(skip=("x", "label")) == []


def test_the_digest_covers_rows_outside_the_sample(tmp_path):
    frame = _numbered(10_000)
    frame.to_parquet(tmp_path / "a.parquet")
    sample, profile = sample_file(tmp_path / "a.parquet", 100, seed=0)
    outside = int(np.setdiff1d(frame["row"], sample["row"])[0])
    frame.loc[outside, "x"] += 1.0
    frame.to_parquet(tmp_path / "b.parquet")
    changed, changed_profile = sample_file(tmp_path / "b.parquet", 100, seed=0)
    pd.testing.assert_frame_equal(sample, changed)
    assert changed_profile.digest != profile.digest


def test_iter_frames_numbers_batches_by_their_first_file_row(tmp_path):
    _numbered(1_050).to_parquet(tmp_path / "t.parquet", row_group_size=400)
    batches = list(iter_frames(tmp_path / "t.parquet", 300))
    sizes = [len(batch) for _, batch in batches]
    assert [first for first, _ in batches] == list(np.cumsum([0, *sizes[:-1]])) and sum(sizes) == 1_050
    assert max(sizes) <= 300 and all(batch["row"].iloc[0] == first for first, batch in batches)
