"""The student as an MLflow pyfunc: raw feature columns in, `score` and `is_anomaly` out."""
import mlflow.pyfunc


class StudentPyfunc(mlflow.pyfunc.PythonModel):
    """Threshold stored with the model; pass `params={"threshold": x}` to override it at scoring time."""

    def load_context(self, context):
        from anomaly_distill.export import load_student

        self.student = load_student(context.artifacts["student"])

    def predict(self, context, model_input, params=None):
        threshold = (params or {}).get("threshold")
        return self.student.predict(model_input, None if threshold is None else float(threshold))
