"""CenterPose forward latency: jit compile time and steady-state forward time per backbone and dtype.

  python bench/model_latency.py                                # DLA34, float32 and bfloat16
  python bench/model_latency.py --backbones DLA34,fan_small --dtypes float32 --repeats 5

Cases: batch 1 at 512x512 (TAO's inference input) and batch 8 at 256x256. Variables are zeros of the
right shapes (values do not change the time). Prints one table row per (backbone, dtype, case), with the
median of --repeats timed calls after the compiling call.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from centerpose_jax.convert import pytorch
from centerpose_jax.models import CenterPose
from centerpose_jax.models import conv

CASES = ((1, 512), (8, 256))  # (batch, square input size in pixels)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def measure(backbone: str, dtype, batch: int, size: int, repeats: int, conv_impl: str):
  """(compile seconds, median forward seconds) of a jitted eval-mode forward."""
  model = CenterPose(model_type=backbone, dtype=dtype, conv_impl=conv_impl)
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pytorch.model_variable_shapes(model))
  x = jnp.zeros((batch, size, size, 3), jnp.float32)
  forward = jax.jit(lambda v, inputs: model.apply(v, inputs, train=False))
  start = time.perf_counter()
  compiled = forward.lower(variables, x).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(variables, x))  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(variables, x))
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backbones", default="DLA34",
                      help="comma-separated: DLA34, fan_small, fan_base, fan_large")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated compute dtypes")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--conv-impl", choices=conv.IMPLS, default=conv.AUTO,
                      help="formulation of the convolutions (auto: by platform; see centerpose_jax/models/conv.py)")
  args = parser.parse_args(argv)
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), convolutions: {args.conv_impl}")
  header = ("backbone", "dtype", "input", "compile s", "forward ms", "images/s")
  print("{:10s} {:9s} {:>12s} {:>10s} {:>11s} {:>9s}".format(*header))
  for backbone in args.backbones.split(","):
    for dtype_name in args.dtypes.split(","):
      for batch, size in CASES:
        compile_s, forward_s = measure(backbone, DTYPES[dtype_name], batch, size, args.repeats,
                                       args.conv_impl)
        print(f"{backbone:10s} {dtype_name:9s} {f'{batch}x{size}x{size}':>12s} {compile_s:10.1f} "
              f"{forward_s * 1e3:11.1f} {batch / forward_s:9.1f}", flush=True)


if __name__ == "__main__":
  main()
