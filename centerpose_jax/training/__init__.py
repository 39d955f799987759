"""Training: losses, optimizer, precision, the data-parallel step, Orbax checkpoints and the loop.

`loop.train_and_evaluate(config)` is the entry point (train.py); `checkpoint.load_variables(path)` gives the
weights of any checkpoint to the other tasks.
"""
