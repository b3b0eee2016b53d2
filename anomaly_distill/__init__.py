"""Teacher-student distillation for anomaly detection: the pure engine (no orchestration or tracking)."""

__version__ = "0.1.0"
