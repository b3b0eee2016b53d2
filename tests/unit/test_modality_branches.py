"""Modality is decided by the objects (a detector's `kind` and protocol, a contract's methods and class
attributes), not by their callers: outside the file that defines the contracts, nothing branches on it (the ratchet
reached zero; a new branch fails here)."""

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("anomaly_distill", "tasks", "flows", "serving", "stores", "infra", "benchmarking")
DEFINES_THE_KINDS = {"anomaly_distill/contract.py"}
BRANCH = re.compile(
    r"isinstance\([^)]*(Tabular|Series|Image)Contract"
    r'|kind ?[!=]= ?"(tabular|timeseries|image|online_series|segmented)"'
    r"|series_input|image_input"
)
STILL_BRANCHING: dict[str, int] = {}


def test_only_the_known_places_branch_on_the_modality():
    found = Counter()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name not in DEFINES_THE_KINDS:
                found[name] += sum(bool(BRANCH.search(line)) for line in path.read_text().splitlines())
    assert +found == STILL_BRANCHING
