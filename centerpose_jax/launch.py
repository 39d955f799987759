"""Starts the processes of a multi-process job on this machine and watches them.

  python -m centerpose_jax.launch --nproc 2 train.py --config=configs/bike.py ...
  python -m centerpose_jax.launch --nproc 8 --gpus_per_process 1 train.py --config=...      (one per GPU)
  python -m centerpose_jax.launch --nproc 2 --cpu_devices 1 train.py --config=...           (test on a CPU)
  python -m centerpose_jax.launch --nnodes 2 --node_rank 0 --coordinator host0:1234 --nproc 8 train.py ...

Process i of this node gets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES (nnodes x nproc) and JAX_PROCESS_ID
(node_rank x nproc + i), which `centerpose_jax.distributed.initialize` reads; with --gpus_per_process K,
CUDA_VISIBLE_DEVICES = its K GPUs; with --cpu_devices K, JAX_PLATFORMS=cpu and K host devices. A command
that ends in .py runs with this Python. Without --coordinator the coordinator is 127.0.0.1 with a free port
(one node).

SIGINT, SIGTERM and SIGHUP are forwarded to every process. When a process fails (non-zero status, or killed
by a signal), the launcher says which and how, sends SIGTERM to the others (SIGKILL after --grace seconds)
and exits with that process's status (128 + signal number for a signal); 0 when all succeed.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

from centerpose_jax import distributed

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.1


def free_port(host: str = "127.0.0.1") -> int:
  """A TCP port on `host` that nothing listens on now."""
  with socket.socket() as probe:
    probe.bind((host, 0))
    return probe.getsockname()[1]


def process_environments(nproc: int, coordinator: str, nnodes: int = 1, node_rank: int = 0,
                         gpus_per_process: int = 0, cpu_devices: int = 0, base: Optional[dict] = None) -> List[dict]:
  """The environment of each of this node's `nproc` processes (see the module docstring)."""
  environments = []
  for local in range(nproc):
    env = dict(os.environ if base is None else base)
    env.update({distributed.COORDINATOR_ENV: coordinator, distributed.NUM_PROCESSES_ENV: str(nnodes * nproc),
                distributed.PROCESS_ID_ENV: str(node_rank * nproc + local)})
    if gpus_per_process:
      env["CUDA_VISIBLE_DEVICES"] = ",".join(str(local * gpus_per_process + g) for g in range(gpus_per_process))
    if cpu_devices:
      env["JAX_PLATFORMS"] = "cpu"
      flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
      env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={cpu_devices}"])
    environments.append(env)
  return environments


def _describe(status: int) -> str:
  if status < 0:
    return f"was killed by {signal.Signals(-status).name}"
  return f"exited with status {status}"


def _failures(children, first_rank: int) -> str:
  """'process 1 was killed by SIGKILL, process 0 exited with status 1' (signals first), or ''."""
  failed = sorted(((rank, child.returncode) for rank, child in enumerate(children)
                   if child.returncode not in (None, 0)), key=lambda item: (item[1] >= 0, item[0]))
  return ", ".join(f"process {first_rank + rank} {_describe(status)}" for rank, status in failed)


def _job_status(statuses: List[int]) -> int:
  """0 when every process succeeded, else the first failure's status (signals first; 128 + signal number)."""
  failed = sorted((status for status in statuses if status != 0), key=lambda status: status >= 0)
  if not failed:
    return 0
  return 128 - failed[0] if failed[0] < 0 else failed[0]


def run(command: List[str], environments: List[dict], grace_s: float = 10.0, first_rank: int = 0) -> int:
  """Runs `command` once per environment, forwarding signals; returns the job's exit status."""
  if command and command[0].endswith(".py"):
    command = [sys.executable] + command
  children = [subprocess.Popen(command, env=env, start_new_session=True) for env in environments]
  received = []

  def forward(signum, _frame):
    received.append(signum)
    for child in children:
      if child.poll() is None:
        child.send_signal(signum)

  previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
  try:
    while None in [child.poll() for child in children]:  # a list: poll every child, not up to the first
      failures = _failures(children, first_rank)
      if failures:
        running = [child for child in children if child.poll() is None]
        if not received:
          print(f"centerpose_jax.launch: {failures}; stopping the other {len(running)} process(es)",
                file=sys.stderr, flush=True)
        _stop(running, grace_s)
        break
      time.sleep(_POLL_S)
    for child in children:
      child.wait()
    if not received and _failures(children, first_rank):
      print(f"centerpose_jax.launch: {_failures(children, first_rank)}", file=sys.stderr, flush=True)
    return _job_status([child.returncode for child in children])
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    _stop([child for child in children if child.poll() is None], 0)


def _stop(children, grace_s: float) -> None:
  """SIGTERM, then SIGKILL for those still running after `grace_s` seconds."""
  for child in children:
    child.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace_s
  for child in children:
    try:
      child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      child.kill()
      child.wait()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m centerpose_jax.launch", description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--nproc", type=int, required=True, help="processes on this node")
  parser.add_argument("--nnodes", type=int, default=1, help="nodes of the job (each runs this launcher)")
  parser.add_argument("--node_rank", type=int, default=0, help="this node's index, 0..nnodes-1")
  parser.add_argument("--coordinator", default=None,
                      help="host:port of process 0 (node 0); default 127.0.0.1 and a free port (one node)")
  parser.add_argument("--gpus_per_process", type=int, default=0,
                      help="give process i GPUs i*K..i*K+K-1 (CUDA_VISIBLE_DEVICES)")
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="run on the CPU with K host devices per process (testing)")
  parser.add_argument("--grace", type=float, default=10.0,
                      help="seconds the others get after SIGTERM when one fails, before SIGKILL")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments, e.g. train.py ...")
  args = parser.parse_args(argv)
  problems = []
  if not args.command:
    problems.append("no command to run (e.g. train.py --config=...)")
  if args.nproc < 1 or args.nnodes < 1:
    problems.append("--nproc and --nnodes must be positive")
  if not 0 <= args.node_rank < args.nnodes:
    problems.append(f"--node_rank {args.node_rank} is out of range for --nnodes {args.nnodes}")
  if args.nnodes > 1 and not args.coordinator:
    problems.append("--coordinator host:port (of node 0) is needed with --nnodes > 1")
  if args.gpus_per_process < 0 or args.cpu_devices < 0 or (args.gpus_per_process and args.cpu_devices):
    problems.append("give --gpus_per_process or --cpu_devices (a positive count), not both")
  if problems:
    parser.error("; ".join(problems))
  coordinator = args.coordinator or f"127.0.0.1:{free_port()}"
  environments = process_environments(args.nproc, coordinator, args.nnodes, args.node_rank, args.gpus_per_process,
                                      args.cpu_devices)
  return run(args.command, environments, args.grace, first_rank=args.node_rank * args.nproc)


if __name__ == "__main__":
  sys.exit(main())
