"""centerpose-jax: CenterPose (category-level 6-DoF object pose) in JAX/Flax."""

__version__ = "0.1.0"
