"""Where the training step's time goes: a profiled step, its XLA ops attributed to layers and to pass.

  .venv/bin/python bench/train_step_profile.py --arch DLA34 --res 256 --batch 2
  .venv/bin/python bench/train_step_profile.py --arch DLA34 --width-multiplier 0.25 --head-conv 64 --res 128 --batch 8
  .venv/bin/python bench/train_step_profile.py --arch fan_small --res 512 --batch 1 --forward   # inference forward

Builds the jitted step training uses (`training.setup.setup`'s `train_step`, one device, random targets as in
train_throughput.py), runs it once to compile, then traces `--steps` steps with `jax.profiler` and reads the
trace's per-op durations. Each executed XLA op is matched to the JAX operation it came from through the
compiled HLO's metadata (`op_name`, e.g. `jvp(CenterPose)/hm/0/conv_general_dilated`), and classified:

  forward            ops of the forward pass (`jvp(...)` without `transpose`)
  backward, input    backward ops, except convolutions that produce a kernel gradient
  backward, weights  convolutions whose output is a kernel gradient (XLA expresses dW as a convolution whose
                     window spans the whole feature map; XLA keeps no metadata for them, so no model part),
                     and the ops of the weight gradients `models.conv` computes itself (its Winograd ones)
  optimizer/other    Adam, clipping, loss bookkeeping, copies without metadata

It prints the share of each class, the time per model part (backbone, neck, ConvGRU, each head; --depth 2 splits
them one level further) and pass, and the slowest ops. With --forward it profiles the jitted inference forward
(eval mode, random weights) instead, every op counted as forward. On XLA:CPU set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true (this script does it when the
variable is unset) so that every op appears in the trace.
"""

import argparse
import collections
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_xprof_traceme=true")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from centerpose_jax.models import conv  # noqa: E402

# A convolution whose window is larger than this (in any spatial dimension) is a kernel gradient.
_LARGEST_KERNEL = 7


def _hlo_op_info(hlo_text: str) -> dict:
  """Instruction name -> (op_name metadata, is kernel-gradient convolution), fusions resolved to their body."""
  computations, current = {}, None
  entry_lines = []
  for line in hlo_text.splitlines():
    header = re.match(r"\s*(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
    if header and "=" not in line.split("{")[0]:
      current = header.group(1)
      computations[current] = []
      continue
    if line.strip() == "}":
      current = None
      continue
    (computations[current] if current else entry_lines).append(line)

  def describe(lines):
    op_name, weight_grad = None, False
    for line in lines:
      meta = re.search(r'op_name="([^"]+)"', line)
      if meta and (op_name is None or " convolution(" in line):
        op_name = meta.group(1)
      window = re.search(r" convolution\(.*window=\{size=([\dx]+)", line)
      if window and max(int(size) for size in window.group(1).split("x")) > _LARGEST_KERNEL:
        weight_grad = True
    return op_name, weight_grad

  info = {}
  for lines in list(computations.values()) + [entry_lines]:
    for line in lines:
      match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
      if not match:
        continue
      called = re.search(r"calls=%?([\w.\-]+)", line)
      op_name, weight_grad = describe([line] + computations.get(called.group(1), []) if called else [line])
      info[match.group(1)] = (op_name or "", weight_grad)
  return info


def _classify(op_name: str, weight_grad: bool) -> str:
  if weight_grad or f"/{conv.WEIGHT_GRAD_SCOPE}/" in op_name:  # XLA's own ones have no metadata
    return "backward, weights"
  if "transpose(jvp(" in op_name:
    return "backward, input"
  if "jvp(" in op_name:
    return "forward"
  return "optimizer/other"


def _part(op_name: str, depth: int = 1) -> str:
  """The module an op belongs to, `depth` levels below the model (`base`, `base/blocks`, ...), or "-"."""
  modules = [component for component in op_name.split("/")[:-1]
             if not component.startswith(("jit(", "jvp(", "transpose(", "CenterPose", "cond", "branch_"))]
  return "/".join(modules[:depth]) or "-"


def _compiled_call(args):
  """(a function running one compiled call, its HLO text): the train step, or with --forward the eval forward."""
  import jax  # pylint: disable=g-import-not-at-top
  import train_throughput  # pylint: disable=g-import-not-at-top

  if args.forward:
    import numpy as np  # pylint: disable=g-import-not-at-top
    from configs import default  # pylint: disable=g-import-not-at-top
    from centerpose_jax.models import create_model  # pylint: disable=g-import-not-at-top
    from centerpose_jax.testing.variables import random_variables  # pylint: disable=g-import-not-at-top
    config = default.get_config()
    config.model.backbone.model_type = args.arch
    config.model.backbone.width_multiplier = args.width_multiplier
    if args.head_conv:
      config.model.head_conv = args.head_conv
    model = create_model(config)
    variables = jax.device_put(random_variables(model, (args.res, args.res)))
    x = jax.device_put(np.zeros((args.batch, args.res, args.res, 3), np.float32))
    forward = jax.jit(lambda v, inputs: model.apply(v, inputs, train=False)).lower(variables, x).compile()
    return lambda: jax.block_until_ready(forward(variables, x)), forward.as_text()
  jitted_step, state, arrays, _ = train_throughput.build_step(args.arch, args.res, args.batch, "fp32",
                                                              args.width_multiplier, args.head_conv)
  train_step = jitted_step.lower(state, arrays).compile()  # compiled once: run and read its HLO metadata
  holder = {"state": state}

  def call():
    holder["state"], metrics = train_step(holder["state"], arrays)  # the state is donated
    jax.block_until_ready(metrics)

  return call, train_step.as_text()


def profile(args) -> dict:
  """Runs and traces the step; returns the aggregated figures."""
  import jax  # pylint: disable=g-import-not-at-top

  call, hlo_text = _compiled_call(args)
  info = _hlo_op_info(hlo_text)
  call()
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.steps):
        call()
    step_seconds = (time.perf_counter() - start) / args.steps
    trace_file = next(pathlib.Path(trace_dir).rglob("*.trace.json.gz"))
    events = json.load(gzip.open(trace_file))["traceEvents"]

  by_class, by_part, by_op = collections.Counter(), collections.Counter(), collections.Counter()
  for event in events:
    if event.get("ph") != "X" or event["name"] not in info:
      continue
    op_name, weight_grad = info[event["name"]]
    seconds = event["dur"] / 1e6 / args.steps
    kind = "forward" if args.forward else _classify(op_name, weight_grad)
    by_class[kind] += seconds
    by_part[(_part(op_name, args.depth), kind)] += seconds
    by_op[(event["name"], kind, op_name)] += seconds
  return {"step_seconds": step_seconds, "op_seconds": sum(by_class.values()), "by_class": by_class,
          "by_part": by_part, "by_op": by_op}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", default="DLA34", choices=("DLA34", "fan_small"))
  parser.add_argument("--width-multiplier", type=float, default=1.0, help="DLA34 width (1.0 = TAO)")
  parser.add_argument("--head-conv", type=int, default=0, help="head hidden channels (0: the config's)")
  parser.add_argument("--res", type=int, default=256, help="input pixels")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--steps", type=int, default=1, help="traced steps (after one compiling step)")
  parser.add_argument("--top", type=int, default=15, help="slowest ops listed")
  parser.add_argument("--forward", action="store_true", help="profile the inference forward, not the step")
  parser.add_argument("--depth", type=int, default=1, help="module levels of the per-part table (2: base/blocks)")
  args = parser.parse_args(argv)
  result = profile(args)
  total = result["op_seconds"]
  print(f"{args.arch} width {args.width_multiplier} {args.res}x{args.res} batch {args.batch}: "
        f"{result['step_seconds']:.3f} s/step wall, {total:.3f} s in XLA ops")
  for kind, seconds in result["by_class"].most_common():
    print(f"  {kind:18s} {seconds:8.3f} s  {100 * seconds / total:5.1f} %")
  print("per model part and pass (s):")
  parts = sorted({part for part, _ in result["by_part"]})
  kinds = ("forward", "backward, input", "backward, weights", "optimizer/other")
  width = max(10, *(len(part) for part in parts))
  print(f"  {'part':{width}s}" + "".join(f"{kind:>19s}" for kind in kinds))
  for part in sorted(parts, key=lambda p: -sum(result["by_part"][(p, k)] for k in kinds)):
    print(f"  {part:{width}s}" + "".join(f"{result['by_part'][(part, kind)]:19.3f}" for kind in kinds))
  print(f"slowest {args.top} ops:")
  for (name, kind, op_name), seconds in result["by_op"].most_common(args.top):
    print(f"  {seconds * 1e3:8.1f} ms  {kind:18s} {name:28s} {op_name[-110:]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
