"""Multi-host start-up: `jax.distributed.initialize` when the environment says this is one of several processes.

Call `initialize()` before anything else touches JAX devices. It connects the processes when
  * JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID are set, or
  * `train.num_nodes` > 1 and JAX recognises the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU), whose
    variables give the same three values;
and does nothing for a single process. Every process then sees all devices of the job (`jax.devices()`),
the training mesh spans them, and each process feeds its own share of the global batch.
"""

import os

import jax

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _int_env(name: str):
  value = os.environ.get(name)
  return None if value in (None, "") else int(value)


def initialize(num_nodes: int = 1) -> bool:
  """Connects this process to the others of a multi-process job; returns whether it is one.

  Args:
    num_nodes: `train.num_nodes`; above 1 without the JAX_* variables, the cluster is auto-detected.
  """
  if jax.distributed.is_initialized():
    return True
  coordinator = os.environ.get(COORDINATOR_ENV)
  num_processes, process_id = _int_env(NUM_PROCESSES_ENV), _int_env(PROCESS_ID_ENV)
  if coordinator or num_processes is not None:
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True
  if num_nodes > 1:
    jax.distributed.initialize()
    return True
  return False
