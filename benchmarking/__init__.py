"""The benchmark harnesses, beside the engine rather than inside it: across-set runs of the teacher, the student
and the peers a user would pick instead (`benchmark`, `series_benchmark`), NAB's scoring rules (`nab`), across-set
statistics (`benchmark_summary`) and the partial-label benchmark's pure pieces (`label_benchmark`). Pure like the
engine (no Prefect, MLflow, GX or Evidently). The scripts that drive them and their records are in benchmarks/."""
