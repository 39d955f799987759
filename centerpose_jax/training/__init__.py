"""Training: losses, optimizer, precision, the data-parallel step, state, divergence watch and run reporting.

train.py's loop is `centerpose_jax.tasks.train.run(config)`; checkpoints are `centerpose_jax.checkpoint`.
"""
