"""What each contract says of its input, which its callers read instead of branching on the modality."""

from anomaly_distill.config import SeriesConfig
from anomaly_distill.contract import ImageContract, SeriesContract, TabularContract

TABLE = TabularContract(features=["f0", "f1"])
SEGMENTED = TabularContract(features=["f0", "f1"], segment_column="merchant")
SERIES = SeriesContract(timestamp_column="t", value_columns=["v"], series=SeriesConfig())
ONLINE = SeriesContract(timestamp_column="t", value_columns=["v"], series=SeriesConfig(mode="online"))
IMAGES = ImageContract(size=32, channels=1, min_size=8)


def test_only_a_table_takes_table_rows():
    assert [c.takes_table_rows for c in (TABLE, SEGMENTED, SERIES, ONLINE, IMAGES)] == [True, True, False, False, False]


def test_only_an_unsegmented_table_scores_each_row_alone():
    assert [c.rows_score_alone for c in (TABLE, SEGMENTED, SERIES, ONLINE, IMAGES)] == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_only_an_online_series_learns_as_it_scores():
    assert [c.learns_online for c in (TABLE, SEGMENTED, SERIES, ONLINE, IMAGES)] == [False, False, False, True, False]
