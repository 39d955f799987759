"""One convolution layer at a time: XLA's own ops against the CPU formulations of `models.conv`, and PyTorch.

  python bench/conv_formulations.py                   # the networks' conv shapes at batch 2, 512x512 input
  python bench/conv_formulations.py --case 2x128x64x256k3s1 --repeats 5

A case BxSxCINxCOUTkKsS is a conv of a [B, S, S, CIN] input with a KxK kernel to COUT channels at stride S
(padding K // 2), float32. For each it prints the median time of the forward and of forward + backward (the
input and weight gradients of a random cotangent), jitted, with impl "native" and "cpu"
(`centerpose_jax.models.conv.conv2d`), and PyTorch's `F.conv2d` on the same NCHW data when torch is installed,
with the ratio PyTorch / ours-cpu.
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/ shares median_seconds

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.export_latency import median_seconds  # noqa: E402
from centerpose_jax.models import conv  # noqa: E402

# DLA34 and fan_small at batch 2, 512x512 input: stem, backbone levels, neck nodes, ConvGRU, heads; then the
# merged convs (`layers.shared_input_conv`): the three heads of one GRU step (DLA34, fan_small; also at batch
# 1) and fan_small's three ConvGRU convs on one map.
CASES = ("2x512x3x16k7s1", "2x512x16x16k3s1", "2x256x32x64k3s2", "2x128x64x64k3s1", "2x64x128x128k3s1",
         "2x32x256x256k3s1", "2x16x512x512k3s1", "2x128x64x256k3s1", "2x128x128x128k3s1", "2x128x128x256k3s1",
         "8x64x64x256k3s1", "8x64x128x128k3s1", "2x128x192x64k1s1", "2x128x64x768k3s1", "2x128x128x768k3s1",
         "1x128x128x768k3s1", "2x128x128x384k3s1")


def parse(case: str):
  shape, rest = case.split("k")
  kernel, stride = rest.split("s")
  batch, size, cin, cout = (int(v) for v in shape.split("x"))
  return batch, size, cin, cout, int(kernel), int(stride)


def ours(x, kernel, cotangent, stride: int, impl: str, repeats: int):
  padding = kernel.shape[0] // 2
  forward = jax.jit(lambda a, b: conv.conv2d(a, b, stride, padding, impl))
  def forward_backward(a, b, g):
    out, vjp = jax.vjp(lambda a, b: conv.conv2d(a, b, stride, padding, impl), a, b)
    return out, vjp(g)

  backward = jax.jit(forward_backward)
  x, kernel, cotangent = jax.device_put((x, kernel, cotangent))
  return (median_seconds(lambda: jax.block_until_ready(forward(x, kernel)), repeats),
          median_seconds(lambda: jax.block_until_ready(backward(x, kernel, cotangent)), repeats))


def pytorch(x, kernel, cotangent, stride: int, repeats: int):
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_()
  tw = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).requires_grad_()
  tg = torch.from_numpy(np.ascontiguousarray(cotangent.transpose(0, 3, 1, 2)))
  padding = kernel.shape[0] // 2

  def forward():
    with torch.no_grad():
      F.conv2d(tx, tw, stride=stride, padding=padding)

  def backward():
    F.conv2d(tx, tw, stride=stride, padding=padding).backward(tg)

  return median_seconds(forward, repeats), median_seconds(backward, repeats)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--case", action="append", help="repeatable, BxSxCINxCOUTkKsS; default: the networks'")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    have_torch = True
  except ImportError:
    have_torch = False
  print(f"backend {jax.default_backend()}; ms per call, median of {args.repeats}")
  print(f"{'case':20s} {'native fwd':>10s} {'cpu fwd':>8s} {'torch fwd':>9s} {'native f+b':>10s} {'cpu f+b':>8s} "
        f"{'torch f+b':>9s} {'torch/cpu f+b':>13s}")
  rng = np.random.default_rng(0)
  for case in args.case or CASES:
    batch, size, cin, cout, k, stride = parse(case)
    x = rng.standard_normal((batch, size, size, cin)).astype(np.float32)
    kernel = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    out = (size + 2 * (k // 2) - k) // stride + 1
    cotangent = rng.standard_normal((batch, out, out, cout)).astype(np.float32)
    native = ours(x, kernel, cotangent, stride, conv.NATIVE, args.repeats)
    cpu = ours(x, kernel, cotangent, stride, conv.CPU, args.repeats)
    torch_times = pytorch(x, kernel, cotangent, stride, args.repeats) if have_torch else (np.nan, np.nan)
    print(f"{case:20s} {1e3 * native[0]:10.1f} {1e3 * cpu[0]:8.1f} {1e3 * torch_times[0]:9.1f} "
          f"{1e3 * native[1]:10.1f} {1e3 * cpu[1]:8.1f} {1e3 * torch_times[1]:9.1f} "
          f"{torch_times[1] / cpu[1]:12.2f}x", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
