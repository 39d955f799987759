"""Helpers shared by test modules in different folders (`from helpers import ...`). Those the benchmarks use
too live in `centerpose_jax.testing`."""

from centerpose_jax.testing.variables import save_checkpoint  # noqa: F401  (re-exported for the tests)
