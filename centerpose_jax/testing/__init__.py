"""Helpers for the tests and the benchmarks, never imported by the library, the tools or the entry points.

`weight_rule` (the reference fixtures' deterministic TAO weights), `variables` (random weights at a trained
net's scale) and `objectron_release` (an Objectron-layout release from the real bottle labels) need only numpy,
JAX and OpenCV; `tao_torch` (the PyTorch reference of TAO's network and loss) needs
torch, a test/bench-only dependency (requirements-dev.txt).
"""
