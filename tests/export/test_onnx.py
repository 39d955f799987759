"""Tests of the generic export machinery (centerpose_jax/export/onnx_export.py) on a ResNet-like linen net.

The net has BatchNorm after every conv and stride-2 projection shortcuts: the structure on which jax2onnx
0.17.1 writes stale NHWC shape labels that make onnxruntime refuse the file ("Add: Incompatible dimensions").
Its input height, width and channels and its block widths all differ, and it runs at batch 3, so a
NCHW/NHWC confusion cannot hide behind equal sizes.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from jax2onnx import to_onnx

from centerpose_jax import encryption
from centerpose_jax.export import onnx_export
from centerpose_jax.models import conv
from centerpose_jax.models import layers
from configs import default

HEIGHT, WIDTH, CHANNELS = 64, 96, 3
BATCH = 3
NUM_BLOCKS = 8  # the fault needs about 4+ residual blocks with projection shortcuts
Conv2d = functools.partial(layers.Conv2d, conv_impl=conv.NATIVE)  # exports as ONNX Conv (as CenterPose's export)


class ResidualBlock(nn.Module):
  """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x):
    y = Conv2d(self.features, 3, self.stride, 1, use_bias=False)(x)
    y = nn.relu(layers.BatchNorm(use_running_average=True, name="bn1")(y))
    y = Conv2d(self.features, 3, 1, 1, use_bias=False)(y)
    y = layers.BatchNorm(use_running_average=True, name="bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = Conv2d(self.features, 1, self.stride, 0, use_bias=False)(x)
      x = layers.BatchNorm(use_running_average=True, name="bn_project")(x)
    return nn.relu(x + y)


class ResNetLike(nn.Module):
  """Stem conv, then NUM_BLOCKS blocks: every second one halves the size, every two double the width."""

  @nn.compact
  def __call__(self, x):
    x = Conv2d(8, 3, 1, 1)(x)
    for i in range(NUM_BLOCKS):
      x = ResidualBlock(8 * 2**(i // 2), 2 if i % 2 else 1)(x)
    return {"features": x, "pooled": jnp.mean(x, axis=(1, 2))}


OUTPUT_NAMES = ("features", "pooled")
NET = ResNetLike()


def apply_net(variables, x):
  return NET.apply(variables, x)


@pytest.fixture(scope="module")
def variables():
  """Random weights and non-trivial BatchNorm statistics (shapes from eval_shape, values from numpy)."""
  shapes = jax.eval_shape(lambda: NET.init(jax.random.PRNGKey(0), jnp.zeros((1, HEIGHT, WIDTH, CHANNELS))))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "var" in name:
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if "kernel" in name:
      return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
    return rng.uniform(-0.2, 0.2, leaf.shape).astype(np.float32) + (1.0 if "scale" in name else 0.0)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def export_config(**overrides):
  config = default.get_config().export
  config.input_height, config.input_width, config.input_channel = HEIGHT, WIDTH, CHANNELS
  config.update(overrides)
  return config


def make_input(batch=BATCH):
  return np.random.default_rng(1).standard_normal((batch, CHANNELS, HEIGHT, WIDTH)).astype(np.float32)


def jax_outputs(variables, x_nchw):
  outputs = apply_net(variables, x_nchw.transpose(0, 2, 3, 1))
  return {name: np.asarray(value) for name, value in outputs.items()}


def run_onnx(path_or_bytes, x_nchw):
  session = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
  return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"input": x_nchw})))


def test_relabel_shapes_repairs_the_batchnorm_shape_labels_of_jax2onnx(variables):
  raw = to_onnx(lambda x: onnx_export.nchw_function(apply_net, OUTPUT_NAMES)(variables, x),
                [("batch_size", CHANNELS, HEIGHT, WIDTH)], opset=18, input_names=["input"],
                output_names=list(OUTPUT_NAMES))
  # The net reproduces the fault: the raw file is refused (if jax2onnx fixes it, this test net no longer
  # guards `relabel_shapes`; keep the fix-up until a release is checked).
  with pytest.raises(Exception, match="Incompatible dimensions"):
    ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
  repaired = onnx_export.relabel_shapes(raw)
  x = make_input()
  outputs = run_onnx(repaired.SerializeToString(), x)
  expected = jax_outputs(variables, x)
  for name in OUTPUT_NAMES:
    np.testing.assert_allclose(outputs[name], expected[name], atol=1e-4, rtol=0, err_msg=name)


@pytest.mark.parametrize("do_constant_folding", [True, False], ids=["folded", "unfolded"])
def test_dynamic_batch_export_loads_and_matches_jax(variables, tmp_path, do_constant_folding):
  path = tmp_path / "net.onnx"
  result = onnx_export.export_onnx(apply_net, variables, export_config(do_constant_folding=do_constant_folding),
                                   path, output_names=OUTPUT_NAMES, test_input=make_input(),
                                   metadata={"purpose": "test"})
  assert result.verification_batch == BATCH
  assert max(result.errors.values()) <= onnx_export.DEFAULT_TOLERANCE
  model = onnx.load(path)
  onnx.checker.check_model(model, full_check=True)
  dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ["batch_size", CHANNELS, HEIGHT, WIDTH]
  for output in model.graph.output:
    assert output.type.tensor_type.shape.dim[0].dim_param == "batch_size"
  assert {p.key: p.value for p in model.metadata_props} == {"purpose": "test"}
  assert [o.version for o in model.opset_import if o.domain == ""] == [16]
  ops = [node.op_type for node in model.graph.node]
  # Folding puts every BatchNorm into its conv's weights and keeps only standard-domain operators.
  assert ("BatchNormalization" in ops) != do_constant_folding
  assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
  for batch in (1, 4):  # the batch axis really is dynamic
    x = make_input(batch)
    outputs, expected = run_onnx(str(path), x), jax_outputs(variables, x)
    for name in OUTPUT_NAMES:
      np.testing.assert_allclose(outputs[name], expected[name], atol=1e-4, rtol=0, err_msg=name)


def test_static_batch_export(variables, tmp_path):
  path = tmp_path / "net.onnx"
  result = onnx_export.export_onnx(apply_net, variables, export_config(batch_size=BATCH, opset_version=17), path,
                                   output_names=OUTPUT_NAMES)
  assert result.verification_batch == BATCH
  model = onnx.load(path)
  assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [BATCH, CHANNELS, HEIGHT, WIDTH]
  assert [d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim] == [BATCH, 64]
  assert [o.version for o in model.opset_import if o.domain == ""] == [17]


def test_verification_failure_is_loud_and_removes_the_file(variables, tmp_path):
  path = tmp_path / "net.onnx"

  def shifted_reference(variables, x):
    outputs = apply_net(variables, x)
    return {**outputs, "pooled": outputs["pooled"] + 1e-3}

  with pytest.raises(onnx_export.ExportVerificationError, match=r"pooled") as error:
    onnx_export.export_onnx(apply_net, variables, export_config(), path, output_names=OUTPUT_NAMES,
                            reference_fn=shifted_reference)
  assert "features" not in str(error.value).split(";")[0]  # only the differing output is blamed
  assert not path.exists()


def test_encrypted_export_needs_the_key(variables, tmp_path):
  path = tmp_path / "net.onnx"
  result = onnx_export.export_onnx(apply_net, variables, export_config(do_constant_folding=False), path,
                                   output_names=OUTPUT_NAMES, encryption_key="secret key")
  assert result.encrypted and encryption.is_encrypted(path.read_bytes())
  with pytest.raises(Exception):
    ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
  x = make_input()
  outputs = run_onnx(encryption.read_file(path, "secret key"), x)
  np.testing.assert_allclose(outputs["pooled"], jax_outputs(variables, x)["pooled"], atol=1e-4, rtol=0)
  with pytest.raises(encryption.WrongKeyError):
    encryption.read_file(path, "another key")


@pytest.mark.parametrize("overrides, message", [
    ({"opset_version": 12}, r"opset_version=12: supported opsets are 13\.\.25"),
    ({"opset_version": 26}, r"supported opsets are 13\.\.25"),
    ({"batch_size": 0}, r"batch_size=0"),
    ({"input_height": -32}, r"input_height=-32"),
])
def test_unsupported_settings_fail_before_tracing(variables, tmp_path, overrides, message):
  def untraceable(variables, x):
    raise AssertionError("traced despite invalid settings")

  with pytest.raises(onnx_export.ExportSettingsError, match=message):
    onnx_export.export_onnx(untraceable, variables, export_config(**overrides), tmp_path / "net.onnx",
                            output_names=OUTPUT_NAMES)
  assert not (tmp_path / "net.onnx").exists()


@pytest.mark.parametrize("opset", [onnx_export.MIN_OPSET, onnx_export.MAX_OPSET])
def test_extreme_supported_opsets_export(variables, tmp_path, opset):
  result = onnx_export.export_onnx(apply_net, variables, export_config(opset_version=opset), tmp_path / "n.onnx",
                                   output_names=OUTPUT_NAMES)
  assert max(result.errors.values()) <= onnx_export.DEFAULT_TOLERANCE


@pytest.mark.parametrize("opset", [13, 16, 18])
def test_reduce_axes_are_legal_at_every_opset(opset):
  model = to_onnx(lambda x: (jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=1)), [("B", 4, 5, 6)], opset=opset)
  model = onnx_export.reduce_axes_as_attributes(model)
  onnx.checker.check_model(model, full_check=True)
  x = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
  session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  mean, maximum = session.run(None, {session.get_inputs()[0].name: x})
  np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(maximum, x.max(axis=1))


def test_abs_difference_treats_matching_nan_and_inf_as_equal():
  a = np.array([1.0, np.nan, np.inf, np.nan, 2.0], np.float32)
  b = np.array([1.5, np.nan, np.inf, 0.0, np.inf], np.float32)
  np.testing.assert_array_equal(onnx_export.abs_difference(a, b), [0.5, 0.0, 0.0, np.inf, np.inf])
