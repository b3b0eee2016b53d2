"""Model code for MLflow's models-from-code logging (see tasks/pyfunc.py); MLflow runs it when loading."""

import mlflow.models

from tasks.pyfunc import DetectorPyfunc

mlflow.models.set_model(DetectorPyfunc())
