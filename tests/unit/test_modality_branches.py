"""Modality is decided by the objects (a detector's `kind` and protocol, a contract's methods and class
attributes), not by their callers. Outside the file that defines a contract, only the places counted here still
branch on the modality; a new branch fails this test, and removing one means lowering its count (a ratchet)."""

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
STILL_BRANCHING = {
    "tasks/inputs.py": 1,  # a table sent to train under the name of a series or image champion is refused
    "flows/training_parameters.py": 1,  # the flat form of a tabular run's parameters
    "serving/app.py": 1,  # the tabular fast path of /score
}


def test_only_the_known_places_branch_on_the_modality():
    found = Counter()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name not in DEFINES_THE_KINDS:
                found[name] += sum(bool(BRANCH.search(line)) for line in path.read_text().splitlines())
    assert +found == STILL_BRANCHING
