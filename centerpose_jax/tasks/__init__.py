"""The four tasks, one module each with `run(config)`: `train`, `evaluate`, `infer`, `export` (called by the
entry points train.py, evaluate.py, infer.py and export.py after the config has been validated)."""
