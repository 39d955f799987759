"""Ours (jit) against PyTorch eager on TAO's network, same shapes and work, side by side: the ratio to beat.

  python bench/versus_pytorch.py                          # DLA34 and fan_small, the four cases below, fp32
  python bench/versus_pytorch.py --arch DLA34 --case train:2x512 --repeats 5
  python bench/versus_pytorch.py --precision fp32,bf16,fp16     # the default on a GPU

Cases: inference forward at 1x512x512 and 8x256x256 (eval mode, no gradient), and the train step at 2x512x512
and 8x256x256. PyTorch runs `centerpose_jax.testing.tao_torch.CenterPoseTAO` (the reference that reproduces
TAO's goldens) eagerly in NCHW; ours runs `create_model` jitted in NHWC. The train step is the same work on both
sides: forward in train mode (batch statistics), the CenterPose loss (`training.losses`, and its PyTorch
transcription `tao_torch.centerpose_loss`) on the same random targets, backward, global-norm clipping at
`train.clip_grad_val` and Adam; ours is the step training runs (`training.setup.setup`'s `train_step`).

Each side runs in its own worker process, both started for a case and warmed up (ours: compiled) before the
timing; then the timed calls alternate, PyTorch, ours, PyTorch, ... (`--sequential`: all of one side's calls,
then the other's, one process at a time, for machines short of memory). Each timed call directly follows an
untimed call of the same side (`--no-lead-in` drops it), as the steps of a training loop follow one another:
where freed memory goes back to the host (virtual machines with free page reporting, such as the 2-core
development machine), memory faulted in again after the other side's call costs far more than memory reused at
once (there about 2 s per GiB against 0.1 s, `bench/memory_refault.py`), and a call that follows the other
side's would pay that for every byte its step frees. A figure is the median of --repeats calls; the ratio is
PyTorch's time over ours (above 1: ours is faster). Peak memory is each worker's: the device's peak allocation
on an accelerator, else the process's peak resident set size.

On a shared machine other processes distort the figures, PyTorch's far more than ours (its OpenMP threads
wait for each other at every op), so on Linux each timed call is guarded: it starts once the other processes
have used less than --max-interference of the CPUs for a second (waiting up to --max-wait seconds), and a
call during which they used more (the CPU time of the whole machine, from /proc/stat, minus the worker's own)
is timed again, up to 3 times. The "others" column is the largest share they took during a kept call.

Devices: PyTorch uses CUDA when `torch.cuda.is_available()`, else the CPU (all its threads); ours the default
JAX backend, where every convolution is XLA's own (the CPU formulations of `models.conv` are chosen only when
lowering for the CPU). bf16 runs PyTorch under `torch.autocast` and ours with the bf16 compute dtype; fp16
adds the dynamic loss scaling of each side (`torch.amp.GradScaler`, `train.precision` fp16). On CUDA, PyTorch
runs with `cudnn.benchmark` and TF32 matmuls (its convolutions use TF32 by default; XLA's default precision
allows TF32 for both), and our worker does not preallocate GPU memory (XLA_PYTHON_CLIENT_PREALLOCATE=false),
so both fit on one device. On a CPU the default is fp32 only (bf16 brings nothing there).

Our worker runs with malloc's transparent huge pages where they take effect, as every entry point does, and for
the train step also with freed memory kept mapped and inline CPU dispatch, as train.py does
(`centerpose_jax.host_memory`); PyTorch's with its defaults (--torch-huge-pages: with huge pages too; on the
2-core development machine they made PyTorch's train step slower).
"""

import argparse
import itertools
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # train_throughput

from centerpose_jax import host_memory  # noqa: E402

ARCHS = ("DLA34", "fan_small")
CASES = ("forward:1x512", "forward:8x256", "train:2x512", "train:8x256")
PRECISIONS = ("fp32", "bf16", "fp16")


def parse_case(case: str):
  """"train:2x512" -> ("train", batch 2, 512 pixels)."""
  work, shape = case.split(":")
  batch, res = shape.split("x")
  if work not in ("forward", "train"):
    raise ValueError(f"unknown work {work!r} in case {case!r}")
  return work, int(batch), int(res)


def _torch_worker(arch: str, work: str, batch: int, res: int, precision: str):
  """(call, synchronize, peak bytes, device name) of PyTorch eager."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import train_throughput  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from centerpose_jax.testing import tao_torch  # pylint: disable=g-import-not-at-top
  from centerpose_jax.training import losses  # pylint: disable=g-import-not-at-top

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  if device.type == "cuda":  # PyTorch at its fastest: cuDNN autotuning, TF32 matmuls as XLA's default precision
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
  dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
  model = tao_torch.CenterPoseTAO(arch).to(device)
  arrays = train_throughput._batch(res, batch, np.random.default_rng(0))  # pylint: disable=protected-access
  tensors = {key: torch.from_numpy(value).to(device) for key, value in arrays.items()}
  x = tensors.pop("input").permute(0, 3, 1, 2).contiguous()

  def autocast():
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

  if work == "forward":
    model.eval()

    def call():
      with torch.inference_mode(), autocast():
        return model(x)
  else:
    config = default.get_config()
    weights = losses.loss_weights(config.train.loss_config)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.optim.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def call():
      optimizer.zero_grad(set_to_none=True)
      with autocast():
        heads = model(x)
      loss = tao_torch.centerpose_loss({k: v.float() for k, v in heads.items()}, tensors, weights)
      scaler.scale(loss).backward()
      scaler.unscale_(optimizer)
      torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_val)
      scaler.step(optimizer)
      scaler.update()
      return loss

  def synchronize(_):
    if device.type == "cuda":
      torch.cuda.synchronize()

  def peak():
    if device.type == "cuda":
      return torch.cuda.max_memory_allocated(), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"

  name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
  return call, synchronize, peak, f"PyTorch {torch.__version__} eager on {name}"


def _jax_worker(arch: str, work: str, batch: int, res: int, precision: str):
  """(call, synchronize, peak bytes, device name) of ours, jitted and compiled."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import train_throughput  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from centerpose_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from centerpose_jax.testing.variables import random_variables  # pylint: disable=g-import-not-at-top
  from centerpose_jax.training import precision as precision_lib  # pylint: disable=g-import-not-at-top

  if work == "forward":
    config = default.get_config()
    config.model.backbone.model_type = arch
    model = create_model(config, dtype=precision_lib.compute_dtype(precision))
    variables = jax.device_put(random_variables(model, (res, res)))
    x = jax.device_put(np.random.default_rng(0).normal(size=(batch, res, res, 3)).astype(np.float32))
    forward = jax.jit(lambda v, inputs: model.apply(v, inputs, train=False)).lower(variables, x).compile()

    def call():
      return forward(variables, x)
  else:
    step, state, arrays, _ = train_throughput.build_step(arch, res, batch, precision, 1.0)
    step = step.lower(state, arrays).compile()
    holder = {"state": state}

    def call():
      holder["state"], metrics = step(holder["state"], arrays)  # the state is donated
      return metrics

  def peak():
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      return stats["peak_bytes_in_use"], "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"

  return call, jax.block_until_ready, peak, f"ours, JAX {jax.__version__} jit on {jax.devices()[0].device_kind}"


def worker(side: str, case: str, arch: str, precision: str) -> None:
  """Builds one side and warms it up, prints {"ready": device}; then per stdin line ("run", or "lead-in": an
  untimed call first) times one call and prints {"seconds", "cpu_seconds", "busy_seconds"} (the last: the
  whole machine's); at end of input prints {"peak_bytes", "peak_kind"}."""
  work, batch, res = parse_case(case)
  if side == "jax":  # as the entry points do: `Worker` sets the variable, JAX does not read it
    host_memory.apply_jax_dispatch_setting(os.environ)
  build = _torch_worker if side == "torch" else _jax_worker
  call, synchronize, peak, device = build(arch, work, batch, res, precision)
  synchronize(call())  # warm-up: allocations, autotuning, the first (compiling) call
  print(json.dumps({"ready": device}), flush=True)
  for line in sys.stdin:
    if line.strip() == "lead-in":
      synchronize(call())
    start, cpu_start, busy_start = time.perf_counter(), time.process_time(), busy_cpu_seconds()
    synchronize(call())
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                      "busy_seconds": busy_cpu_seconds() - busy_start}), flush=True)
  peak_bytes, peak_kind = peak()
  print(json.dumps({"peak_bytes": peak_bytes, "peak_kind": peak_kind}), flush=True)


def busy_cpu_seconds() -> float:
  """CPU-seconds the whole machine has spent busy since boot (Linux /proc/stat; NaN elsewhere)."""
  try:
    with open("/proc/stat", encoding="ascii") as stat:
      fields = [int(v) for v in stat.readline().split()[1:]]
  except OSError:
    return float("nan")
  idle = fields[3] + fields[4]  # idle, iowait
  return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def others_share(busy_seconds: float, own_cpu_seconds: float, wall_seconds: float) -> float:
  """The share of all CPUs used by other processes over `wall_seconds` (0 when /proc/stat is unavailable)."""
  share = (busy_seconds - own_cpu_seconds) / (wall_seconds * os.cpu_count())
  return 0.0 if share != share else max(0.0, share)  # NaN: no /proc/stat


def wait_for_quiet(max_share: float, max_wait: float) -> None:
  """Returns once other processes used less than `max_share` of the CPUs for a second, or after `max_wait` s."""
  deadline = time.monotonic() + max_wait
  while True:
    busy = busy_cpu_seconds()
    time.sleep(1.0)
    if others_share(busy_cpu_seconds() - busy, 0.0, 1.0) < max_share or time.monotonic() > deadline:
      return


class Worker:
  """A worker process of one side, driven line by line."""

  def __init__(self, side: str, case: str, arch: str, precision: str, huge_pages: bool):
    # the settings of the entry point that does this work: train.py keeps freed memory mapped, infer.py not
    keep_freed_memory = parse_case(case)[0] == "train"
    env = host_memory.host_memory_environment(os.environ, keep_freed_memory) if huge_pages else dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share an accelerator with the PyTorch worker
    command = [sys.executable, __file__, "--worker", side, "--case", case, "--arch", arch, "--precision",
               precision]
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.side, self.times, self.interference = side, [], []
    self.device = self._read()["ready"]

  def _read(self) -> dict:
    line = self.process.stdout.readline()
    if not line:
      raise SystemExit(f"the {self.side} worker failed (exit status {self.process.wait()})")
    return json.loads(line)

  def time_one(self, max_share: float, max_wait: float, lead_in: bool) -> None:
    """One timed call (after an untimed one if `lead_in`), repeated (up to 3 times in all) while other processes
    took more than `max_share`."""
    for attempt in itertools.count(1):
      wait_for_quiet(max_share, max_wait)
      self.process.stdin.write("lead-in\n" if lead_in else "run\n")
      self.process.stdin.flush()
      result = self._read()
      share = others_share(result["busy_seconds"], result["cpu_seconds"], result["seconds"])
      if share <= max_share or attempt == 3:
        break
    self.times.append(result["seconds"])
    self.interference.append(share)

  def finish(self) -> dict:
    self.process.stdin.close()
    result = self._read()
    self.process.wait()
    return {"median_s": statistics.median(self.times), "runs": len(self.times), "times_s": self.times,
            "others_max": max(self.interference), "peak_gib": result["peak_bytes"] / 2**30,
            "peak_kind": result["peak_kind"], "device": self.device}


def measure(case: str, arch: str, precision: str, args) -> dict:
  """{"torch": figures, "ours": figures, "ratio": PyTorch median / our median} of one case."""
  sides = ("torch", "jax")
  huge_pages = {"torch": args.torch_huge_pages, "jax": True}  # ours runs as the entry points do
  results = {}
  if args.sequential:
    for side in sides:
      one = Worker(side, case, arch, precision, huge_pages[side])
      for _ in range(args.repeats):
        one.time_one(args.max_interference, args.max_wait, args.lead_in)
      results[side] = one.finish()
  else:
    workers = [Worker(side, case, arch, precision, huge_pages[side]) for side in sides]
    for _ in range(args.repeats):
      for one in workers:
        one.time_one(args.max_interference, args.max_wait, args.lead_in)
    results = {one.side: one.finish() for one in workers}
  return {"arch": arch, "case": case, "precision": precision, "torch": results["torch"], "ours": results["jax"],
          "ratio": results["torch"]["median_s"] / results["jax"]["median_s"]}


def cpu_model() -> str:
  """The host CPU's model name (Linux: /proc/cpuinfo), else `platform.processor()`: the ratios depend on it (the
  same code measured 1.2x on a Xeon and 1.7x on an EPYC, docs/benchmarks.md)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def _default_precisions() -> str:
  import torch  # pylint: disable=g-import-not-at-top
  return "fp32,bf16,fp16" if torch.cuda.is_available() else "fp32"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", action="append", choices=ARCHS, help="repeatable; default: both")
  parser.add_argument("--case", action="append", help=f"repeatable, work:BATCHxSIZE; default: {', '.join(CASES)}")
  parser.add_argument("--precision", help="comma-separated fp32, bf16, fp16 (default: fp32 on a CPU, all on CUDA)")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per side and case (after a warm-up)")
  parser.add_argument("--sequential", action="store_true", help="one side after the other (half the memory)")
  parser.add_argument("--no-lead-in", dest="lead_in", action="store_false",
                      help="time calls that follow the other side's directly (no untimed call of their own first)")
  parser.add_argument("--max-interference", type=float, default=0.1,
                      help="share of the CPUs other processes may use during a timed call (Linux)")
  parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine per call")
  parser.add_argument("--torch-huge-pages", action="store_true",
                      help="run PyTorch with malloc's transparent huge pages too (ours always runs as train.py does)")
  parser.add_argument("--worker", choices=("torch", "jax"), help=argparse.SUPPRESS)  # internal
  args = parser.parse_args(argv)
  if args.worker:
    worker(args.worker, args.case[0], args.arch[0], args.precision)
    return 0
  precisions = (args.precision or _default_precisions()).split(",")
  for precision in precisions:
    if precision not in PRECISIONS:
      parser.error(f"--precision: unknown {precision!r}")
  cases = args.case or list(CASES)
  for case in cases:
    parse_case(case)
  lead_in = "each after an untimed call of its own side" if args.lead_in else "no lead-in call"
  print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({cpu_model()}); median of {args.repeats} "
        f"calls per side; ratio = PyTorch / ours; {lead_in}")
  print(f"{'arch':10s} {'case':14s} {'precision':9s} {'PyTorch s':>10s} {'ours s':>10s} {'ratio':>7s} "
        f"{'PyTorch GiB':>12s} {'ours GiB':>9s} {'others':>7s}")
  for arch in args.arch or ARCHS:
    for case in cases:
      for precision in precisions:
        row = measure(case, arch, precision, args)
        others = max(row["torch"]["others_max"], row["ours"]["others_max"])
        print(f"{arch:10s} {case:14s} {precision:9s} {row['torch']['median_s']:10.3f} {row['ours']['median_s']:10.3f} "
              f"{row['ratio']:6.2f}x {row['torch']['peak_gib']:12.2f} {row['ours']['peak_gib']:9.2f} "
              f"{100 * others:6.0f}%", flush=True)
        print(json.dumps(row), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
