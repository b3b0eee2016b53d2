"""The training input task refuses a table under the name of a champion of another kind, saying which."""

import pytest

from anomaly_distill.config import SeriesConfig
from anomaly_distill.contract import ImageContract, SeriesContract
from tasks.inputs import validate_data
from tasks.validation import ValidationFailed

SERIES = SeriesContract(timestamp_column="timestamp", value_columns=["value"], series=SeriesConfig())
IMAGES = ImageContract(size=32, channels=1, min_size=8)


@pytest.mark.parametrize("champion", [SERIES, IMAGES], ids=["timeseries", "image"])
def test_a_table_under_a_champion_of_another_kind_is_refused_before_any_check(champion, small_frame):
    with pytest.raises(ValidationFailed) as refused:  # before tracking: the run id is never used
        validate_data.fn(small_frame, "label", champion, "no-such-run")
    expected = f"the champion scores {champion.kind} input (columns {champion.input_columns}); train a table under"
    assert expected in str(refused.value)
