"""The tabular kinds: the table pipeline (teacher → soft labels → student), its student, compression,
explanations and per-segment models."""
