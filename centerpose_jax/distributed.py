"""Multi-process jobs on `jax.distributed`: start-up, agreement between the processes, each one's data share.

A job is N processes (one or more per host), each owning its local devices; together they form one device
mesh and train like one process with all the devices (same global batch, same losses and weights).

  initialize()         joins the job when the environment says this is one of several processes:
                       JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES, JAX_PROCESS_ID (set
                       them yourself, or let `python -m centerpose_jax.launch` set them), or `train.num_nodes` > 1
                       on a cluster JAX recognises (SLURM, Open MPI, Kubernetes, Cloud TPU). The settings are
                       checked first (a process id out of range, a malformed address fail at once); a
                       coordinator that cannot be reached fails after CENTERPOSE_INIT_TIMEOUT_S seconds
                       (default 300) naming the address. A process that stops sending heartbeats for
                       CENTERPOSE_HEARTBEAT_TIMEOUT_S seconds (default 100) stops the whole job.
  check_same_job()     every process must have the same config (a SHA-256 of it is exchanged) and the same
                       facts (dataset sizes, local device count); else every process stops naming the
                       difference, instead of hanging in a collective later.
  data_share()         which block of each global batch this process loads (its devices' place in the mesh).
  local_rows()         this process's rows of a global batch's (replicated) outputs.
  all_gather_objects() picklable values of every process (through the coordination service's key-value
                       store), e.g. validation results to merge.
  peer_failure_exits() a collective that fails because another process died ends this one at once with a
                       clear message (no hang, no wall of runtime logs).

On CPU the collectives run over gloo: `initialize` selects it (`jax_cpu_collectives_implementation`, a setting
of the CPU client only; GPUs use NCCL and TPUs ICI whatever it says), so nothing is needed from the user.
"""

import contextlib
import hashlib
import os
import pickle
import socket
import sys
import time
from typing import List, Sequence, Tuple

import jax
import numpy as np

from centerpose_jax import errors

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
INIT_TIMEOUT_ENV = "CENTERPOSE_INIT_TIMEOUT_S"
HEARTBEAT_TIMEOUT_ENV = "CENTERPOSE_HEARTBEAT_TIMEOUT_S"
DEFAULT_INIT_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 100
_GATHER_TIMEOUT_S = 3600  # a peer still validating its share; a dead one is caught by the heartbeat
_exchanges = 0  # all_gather_objects calls so far (each exchange has its own keys)
# Words of the runtime's errors when a collective loses a peer (gloo on CPU, NCCL on GPU, the coordination
# service's heartbeat / barrier failures).
_PEER_FAILURE_MARKERS = ("connection closed by peer", "connection reset", "gloo", "nccl", "heartbeat",
                         "barrier", "unavailable", "coordination service", "socket closed")


class DistributedSetupError(errors.CenterPoseError):
  """A multi-process job that cannot start: bad or missing coordinator variables, an unreachable coordinator,
  processes with different configs, data or device counts."""


class PeerFailedError(errors.CenterPoseError):
  """Another process of the job stopped (killed, crashed) while this one needed it."""


def _int_env(name: str):
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise DistributedSetupError(f"{name}={value!r}: expected an integer") from None


def _env_seconds(name: str, default: int) -> int:
  value = _int_env(name)
  if value is None:
    return default
  if value <= 0:
    raise DistributedSetupError(f"{name}={value}: expected a positive number of seconds")
  return value


def _check_coordinator(coordinator, num_processes, process_id) -> None:
  """Refuses incomplete or impossible settings before anything waits on the network."""
  missing = [name for name, value in ((COORDINATOR_ENV, coordinator), (NUM_PROCESSES_ENV, num_processes),
                                      (PROCESS_ID_ENV, process_id)) if value in (None, "")]
  if missing:
    raise DistributedSetupError(
        f"a multi-process job needs {COORDINATOR_ENV}, {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV}; "
        f"{', '.join(missing)} not set (or start the processes with python -m centerpose_jax.launch)")
  if num_processes < 1:
    raise DistributedSetupError(f"{NUM_PROCESSES_ENV}={num_processes}: expected a positive number of processes")
  if not 0 <= process_id < num_processes:
    raise DistributedSetupError(f"{PROCESS_ID_ENV}={process_id} is out of range: a job of {num_processes} "
                                f"processes numbers them 0..{num_processes - 1}")
  host, _, port = coordinator.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedSetupError(f"{COORDINATOR_ENV}={coordinator!r}: expected host:port of process 0 "
                                "(e.g. 10.0.0.1:1234)")
  try:
    socket.getaddrinfo(host.strip("[]"), int(port))
  except OSError as error:
    raise DistributedSetupError(f"{COORDINATOR_ENV}={coordinator!r}: the host {host!r} is unknown ({error}); "
                                "give the address of the machine that runs process 0") from None


def _check_port_free(coordinator: str) -> None:
  """Process 0 runs the coordinator service on the address's port: refuse a port that is taken."""
  port = int(coordinator.rpartition(":")[2])
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the service's own bind: TIME_WAIT is no use
    try:
      probe.bind(("", port))
    except OSError as error:
      raise DistributedSetupError(
          f"{COORDINATOR_ENV}={coordinator}: process 0 runs the job's coordinator on port {port}, which cannot be "
          f"used here ({error.strerror or error}); choose a free port (python -m centerpose_jax.launch picks "
          "one)") from None


def _wait_for_coordinator(coordinator: str, process_id: int, num_processes: int, timeout_s: int) -> None:
  """Until process 0's coordinator accepts connections (its port is open), at most `timeout_s` seconds.

  JAX's own wait ends with a fatal runtime error that terminates the process without a Python exception,
  so the address is tried here first: an unreachable coordinator gives a DistributedSetupError naming it.
  """
  host, _, port = coordinator.rpartition(":")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.1, min(
          2.0, deadline - time.monotonic()))):
        return
    except OSError as error:
      if time.monotonic() >= deadline:
        raise DistributedSetupError(
            f"process {process_id} of {num_processes} could not reach the coordinator at {coordinator} within "
            f"{timeout_s} s ({error.strerror or error}): check that process 0 is running, that "
            f"{COORDINATOR_ENV} is its address and port, reachable from here, and ({INIT_TIMEOUT_ENV}) the "
            "time allowed to start") from None
      time.sleep(0.2)


def initialize(num_nodes: int = 1) -> bool:
  """Connects this process to the others of a multi-process job; returns whether it is one.

  Call it before anything else touches JAX devices (see the module docstring for what it reads).

  Args:
    num_nodes: `train.num_nodes`; above 1 without the JAX_* variables, the cluster is auto-detected.

  Raises:
    DistributedSetupError: impossible settings (at once) or a coordinator not reached in time.
  """
  if jax.distributed.is_initialized():
    return True
  coordinator = os.environ.get(COORDINATOR_ENV) or None
  num_processes, process_id = _int_env(NUM_PROCESSES_ENV), _int_env(PROCESS_ID_ENV)
  if coordinator or num_processes is not None or process_id is not None:
    if num_processes == 1 and process_id in (None, 0):
      return False
    _check_coordinator(coordinator, num_processes, process_id)
    where = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
  elif num_nodes > 1:
    where = {}
  else:
    return False
  init_timeout = _env_seconds(INIT_TIMEOUT_ENV, DEFAULT_INIT_TIMEOUT_S)
  if where and process_id == 0:
    _check_port_free(coordinator)
  elif where:
    _wait_for_coordinator(coordinator, process_id, num_processes, init_timeout)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**where, initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=_env_seconds(HEARTBEAT_TIMEOUT_ENV,
                                                                      DEFAULT_HEARTBEAT_TIMEOUT_S))
  except (RuntimeError, ValueError) as error:  # XLA's runtime errors are RuntimeErrors
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    who = (f"process {process_id} of {num_processes} could not join the job at {coordinator}"
           if where else "could not join the cluster's job (train.num_nodes > 1, cluster auto-detection)")
    raise DistributedSetupError(
        f"{who} within {init_timeout} s ({first_line}): check that process 0 is running, that "
        f"{COORDINATOR_ENV} is its address and a free port reachable from here, that every process has the "
        f"same {NUM_PROCESSES_ENV}, and ({INIT_TIMEOUT_ENV}) the time allowed to start") from None
  return True


def join_job(config) -> bool:
  """`initialize` for `train.num_nodes`, then `check_same_job` on the config and the local device count: the
  start-up of a training process, before anything reads data or builds the mesh. Returns whether this is a
  multi-process job."""
  joined = initialize(int(config.train.num_nodes))
  check_same_job(config, local_devices=jax.local_device_count())
  return joined


def config_digest(config) -> str:
  """SHA-256 (hex) of the config's JSON (keys sorted): equal digests mean equal configs, flags included."""
  return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()


# What to do when a fact differs between the processes (`check_same_job`).
_FACT_ADVICE = {
    "local_devices": "the global batch (dataset.batch_size x all devices) is split over the processes by their "
                     "devices and cannot be divided evenly: give every process the same number of devices "
                     "(launch --gpus_per_process / --cpu_devices, CUDA_VISIBLE_DEVICES)",
    "train_samples": "every process must read the same dataset (a shared or identical copy)",
    "val_samples": "every process must read the same dataset (a shared or identical copy)",
}


def check_same_job(config=None, **facts: int) -> None:
  """Stops every process of the job unless all have the same config digest and the same `facts`.

  Args:
    config: the validated config, or None to compare `facts` only.
    **facts: integers that must agree (e.g. train_samples=len(source), local_devices=2); the message names
      each one that differs, its value on every process and what to do.

  Raises:
    DistributedSetupError: on every process, naming the differences (a collective: call it on all processes).
  """
  if jax.process_count() == 1:
    return
  mine = {"config": config_digest(config) if config is not None else "", "facts": {k: int(v) for k, v in facts.items()}}
  gathered = all_gather_objects(mine)
  problems = []
  digests = [entry["config"] for entry in gathered]
  others = [index for index, value in enumerate(digests) if value != digests[0]]
  if others:
    problems.append(f"the config of process(es) {', '.join(map(str, others))} differs from process 0's "
                    f"(SHA-256 {digests[others[0]][:12]}... against {digests[0][:12]}...): start every process "
                    "with the same code, --config file and --config.* overrides")
  for name in sorted(facts):
    values = [entry["facts"].get(name) for entry in gathered]
    if len(set(values)) > 1:
      per_process = ", ".join(f"process {index}: {value}" for index, value in enumerate(values))
      advice = _FACT_ADVICE.get(name)
      problems.append(f"{name} differs ({per_process})" + (f": {advice}" if advice else ""))
  if problems:
    raise DistributedSetupError(f"the {len(gathered)} processes of the job disagree: " + "; ".join(problems))


def data_share(devices: Sequence[jax.Device]) -> Tuple[int, int]:
  """(index, count): this process loads block `index` of `count` equal blocks of every global batch.

  The global batch is split along the mesh's devices (`devices`, the mesh order); this process's devices must
  be one contiguous run of them, the same number on every process, so that each process loads an equal,
  contiguous part of the batch. One process: (0, 1).

  Raises:
    DistributedSetupError: the processes have different device counts (the global batch, dataset.batch_size
      x devices, cannot be split evenly over them) or interleaved devices.
  """
  me = jax.process_index()
  positions = [index for index, device in enumerate(devices) if device.process_index == me]
  counts = {}
  for device in devices:
    counts[device.process_index] = counts.get(device.process_index, 0) + 1
  if len(set(counts.values())) > 1:
    per_process = ", ".join(f"process {p}: {n}" for p, n in sorted(counts.items()))
    raise DistributedSetupError(
        f"the global batch (dataset.batch_size x {len(devices)} devices) is not divisible into equal process "
        f"shares: the processes have different device counts ({per_process}); give every process the same "
        "number of devices (launch --gpus_per_process / --cpu_devices, CUDA_VISIBLE_DEVICES)")
  if not positions or positions != list(range(positions[0], positions[0] + len(positions))):
    raise DistributedSetupError(f"process {me}'s devices are not one contiguous part of the mesh ({devices})")
  return positions[0] // len(positions), len(devices) // len(positions)


def local_rows(tree, global_array: jax.Array):
  """This process's rows of `tree` (numpy arrays [B, ...] over the whole global batch, e.g. replicated
  outputs read with `to_host`): the rows that `global_array` ([B, ...], sharded along its leading axis) holds
  on this process's devices, in order."""
  blocks = sorted({(shard.index[0].start or 0, shard.index[0].stop) for shard in global_array.addressable_shards})
  return jax.tree_util.tree_map(lambda value: np.concatenate([value[start:stop] for start, stop in blocks]), tree)


def all_gather_objects(value, timeout_s: int = _GATHER_TIMEOUT_S) -> List:
  """[value of process 0, value of process 1, ...] for a picklable `value` (call it on every process, in the
  same order; values come from the job's own processes).

  The values travel through the coordination service's key-value store, not through device collectives, so
  they need no compilation and no equal device counts (a start-up check compares those). A process that does
  not contribute within `timeout_s` seconds raises DistributedSetupError.
  """
  if jax.process_count() == 1:
    return [value]
  global _exchanges
  _exchanges += 1
  client = _client()
  prefix = f"centerpose_jax/gather/{_exchanges}"
  client.key_value_set_bytes(f"{prefix}/{jax.process_index()}", pickle.dumps(value))
  values = []
  for index in range(jax.process_count()):
    try:
      values.append(pickle.loads(client.blocking_key_value_get_bytes(f"{prefix}/{index}", timeout_s * 1000)))
    except Exception as error:  # pylint: disable=broad-except  # the runtime raises its own error types
      raise DistributedSetupError(f"process {index} did not answer within {timeout_s} s ({error})") from error
  return values


def _client():
  """The coordination service client of this process (jax.distributed keeps it; Orbax reads it the same way)."""
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  return jax_distributed.global_state.client


def interleave(shares: Sequence[Sequence]) -> list:
  """The items of strided shares (process p holds items p, p + N, p + 2N, ... of N processes) in their
  original order."""
  merged = []
  for position in range(max((len(share) for share in shares), default=0)):
    merged.extend(share[position] for share in shares if position < len(share))
  return merged


def _is_peer_failure(error: BaseException) -> bool:
  text = str(error).lower()
  return any(marker in text for marker in _PEER_FAILURE_MARKERS)


@contextlib.contextmanager
def peer_failure_exits(program: str):
  """In a multi-process job, a runtime error of a collective whose peer has gone (killed, crashed) prints
  one message and ends this process with status 1 at once.

  Exiting normally would run JAX's shutdown, which waits for a barrier the dead process never reaches and
  then aborts with pages of runtime logs; the checkpoints written so far are complete (Orbax renames a
  checkpoint into place only when every process has written its part), so the same commands resume.
  """
  try:
    yield
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1 or not _is_peer_failure(error):
      raise
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    failure = PeerFailedError(f"process {jax.process_index()}: another process of the job stopped ({first_line}); "
                              "this one stops too. Start the same commands again to resume from the last "
                              "checkpoint.")
    print(f"{program}: {failure}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # pylint: disable=protected-access
