"""Parity at non-square inputs, against an independent PyTorch reference of TAO's network (tao_torch.py).

TAO's golden outputs exist only for square inputs. So: (a) the PyTorch reference, filled with the fixture's
deterministic weights by a strict `load_state_dict`, must reproduce TAO's goldens (all four backbones at
128x128, DLA34 also at 512x512), which makes it a stand-in for TAO; (b) our Flax model, with the same
weights converted by our converter, must equal the reference at 96x160 and 160x96, every head.
"""

import os

import jax
import numpy as np
import pytest

try:
  import torch  # test-only dependency (requirements-dev.txt)
except ImportError:
  if os.environ.get("CI", "").lower() == "true":  # CI installs requirements-dev: a missing torch is a failure
    raise
  pytest.skip("torch is not installed (pip install -r requirements-dev.txt)", allow_module_level=True)

# pylint: disable=wrong-import-position
from centerpose_jax.convert import pytorch
from centerpose_jax.models import CenterPose
from centerpose_jax.testing import tao_torch
from centerpose_jax.testing import weight_rule

# arch -> (golden file, atol): the DLA34 512 goldens are float16 (rounding error <= 9.8e-4).
GOLDENS = {arch: ((f"golden_{arch}.npz", 1e-4),) for arch in ("fan_small", "fan_base", "fan_large")}
GOLDENS["DLA34"] = (("golden_DLA34.npz", 1e-4), ("golden_DLA34_512.npz", 2e-3))
NON_SQUARE = ((96, 160), (160, 96))


class Models:
  """TAO's rule-filled weights in the PyTorch reference and, converted, in our Flax model."""

  def __init__(self, networks_dir, arch):
    self.arch = arch
    state_dict = weight_rule.make_state_dict(networks_dir / f"keys_{arch}.tsv")
    self.torch_model = tao_torch.CenterPoseTAO(arch).eval()
    self.torch_model.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()},
                                     strict=True)
    variables = pytorch.from_tao_state_dict(state_dict, arch)
    model = CenterPose(model_type=arch)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))  # one jit per model (traced per shape)
    self._flax = lambda x: forward(variables, x)

  def torch_heads(self, x):
    """x: [1, 3, H, W] numpy -> {head: NCHW numpy}."""
    with torch.no_grad():
      return {head: out.numpy() for head, out in self.torch_model(torch.from_numpy(x)).items()}

  def flax_heads(self, x):
    """x: [1, 3, H, W] numpy -> {head: NCHW numpy} (the model runs NHWC)."""
    outputs = self._flax(x.transpose(0, 2, 3, 1))
    return {head: np.asarray(out).transpose(0, 3, 1, 2) for head, out in outputs.items()}


@pytest.fixture(scope="module", params=tuple(GOLDENS))
def models(request, tao_reference):
  return Models(tao_reference / "networks", request.param)


def test_torch_reference_reproduces_tao_goldens(models, tao_reference):
  for name, atol in GOLDENS[models.arch]:
    golden = np.load(tao_reference / "networks" / name)
    if "input" in golden:
      x = golden["input"]
    else:  # the 512 file stores only the first values of the rule input
      x = weight_rule.make_input((1, 3, 512, 512))
      np.testing.assert_array_equal(x.reshape(-1)[:16], golden["input_first16"])
    outputs = models.torch_heads(x)
    assert set(outputs) == set(tao_torch.HEADS)
    for head, out in outputs.items():
      np.testing.assert_allclose(out, golden[head].astype(np.float32), rtol=0, atol=atol, err_msg=f"{name} {head}")


@pytest.mark.parametrize("height,width", NON_SQUARE)
def test_flax_matches_torch_reference_at_non_square_input(models, height, width):
  x = weight_rule.make_input((1, 3, height, width))
  expected = models.torch_heads(x)
  outputs = models.flax_heads(x)
  for head, classes in tao_torch.HEADS.items():
    assert outputs[head].shape == expected[head].shape == (1, classes, height // 4, width // 4)
    np.testing.assert_allclose(outputs[head], expected[head], rtol=0, atol=1e-4, err_msg=head)


@pytest.mark.parametrize("arch", ("DLA34", "fan_small"))
def test_torch_reference_runs_on_the_device_of_its_weights(arch):
  """The reference builds no tensor on the CPU behind its weights' back (bench/versus_pytorch.py runs it on CUDA):
  on PyTorch's shape-only `meta` device, as on CUDA, such a tensor would fail the first op that meets a weight."""
  model = tao_torch.CenterPoseTAO(arch).eval().to("meta")
  with torch.no_grad():
    heads = model(torch.empty((1, 3, 64, 96), device="meta"))
  assert {head: tuple(out.shape) for head, out in heads.items()} == {
      head: (1, classes, 16, 24) for head, classes in tao_torch.HEADS.items()}
  assert all(out.device.type == "meta" for out in heads.values())
