"""Importers from TAO: PyTorch checkpoints (`pytorch`) and experiment specs (`tao_spec`)."""
