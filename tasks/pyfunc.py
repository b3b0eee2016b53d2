"""The registered model as an MLflow pyfunc: the detector's saved state plus its data contract.

Logged from code (`tasks/pyfunc_model.py`), not as a pickled object: loading runs this module, not stored bytes.
Input goes through the contract's check (integers for float features accepted, every problem named), then the
detector: `score` and `is_anomaly` per row (per scored point for a series model)."""

import json
from pathlib import Path

import mlflow.pyfunc

from anomaly_distill.contract import check_input, contract_from_dict
from anomaly_distill.detector import load_detector, predict


class DetectorPyfunc(mlflow.pyfunc.PythonModel):
    """Threshold stored with the model; pass `params={"threshold": x}` to override it at scoring time, and
    `params={"explain": k}` for an `explanation` column (the k columns that raise each flagged row's score)."""

    def load_context(self, context):
        self.detector = load_detector(context.artifacts["detector"])
        self.contract = contract_from_dict(json.loads(Path(context.artifacts["contract"]).read_text()))

    def predict(self, context, model_input, params=None):
        threshold, explain = (params or {}).get("threshold"), int((params or {}).get("explain") or 0)
        rows = check_input(self.contract, model_input)
        return predict(self.detector, rows, None if threshold is None else float(threshold), explain)


class StudentPyfunc(DetectorPyfunc):
    """Versions registered before models-from-code pickled this class; kept so that they still load."""

    def load_context(self, context):
        self.detector, self.contract = load_detector(context.artifacts["student"]), None

    def predict(self, context, model_input, params=None):
        threshold = (params or {}).get("threshold")
        return self.detector.predict(model_input, None if threshold is None else float(threshold))
