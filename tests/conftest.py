from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ADBENCH = SHARED / "adbench"


@pytest.fixture
def adbench():
    if not ADBENCH.is_dir():
        pytest.skip(f"shared ADBench data not found at {ADBENCH}")
    return ADBENCH


@pytest.fixture
def small_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    frame.loc[:19, ["a", "b"]] += 6  # 5 % obvious anomalies
    frame["label"] = 0
    frame.loc[:19, "label"] = 1
    return frame
