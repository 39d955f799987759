"""Multi-process start-up (`centerpose_jax.distributed`) without a second process: when it joins a job, and
bad settings refused at once with a message naming the variable; the launcher's process environments, signal
forwarding and exit status (children are small Python scripts, no JAX)."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import pytest

from centerpose_jax import distributed
from centerpose_jax import launch

ENV_NAMES = (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV,
             distributed.INIT_TIMEOUT_ENV, distributed.HEARTBEAT_TIMEOUT_ENV)


@pytest.fixture
def calls(monkeypatch):
  recorded = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: recorded.append(kwargs))
  for name in ENV_NAMES:
    monkeypatch.delenv(name, raising=False)
  return recorded


def _set(monkeypatch, coordinator=None, num_processes=None, process_id=None):
  for name, value in ((distributed.COORDINATOR_ENV, coordinator), (distributed.NUM_PROCESSES_ENV, num_processes),
                      (distributed.PROCESS_ID_ENV, process_id)):
    if value is not None:
      monkeypatch.setenv(name, str(value))


def test_single_process_does_not_initialize(calls):
  assert distributed.initialize(num_nodes=1) is False
  assert calls == []


def test_process_zero_starts_the_job_with_the_timeouts(calls, monkeypatch):
  port = launch.free_port()
  _set(monkeypatch, f"127.0.0.1:{port}", 4, 0)
  monkeypatch.setenv(distributed.HEARTBEAT_TIMEOUT_ENV, "7")
  assert distributed.initialize() is True
  assert calls == [{"coordinator_address": f"127.0.0.1:{port}", "num_processes": 4, "process_id": 0,
                    "initialization_timeout": distributed.DEFAULT_INIT_TIMEOUT_S, "heartbeat_timeout_seconds": 7}]
  assert jax.config.jax_cpu_collectives_implementation == "gloo"


def test_one_process_in_the_environment_is_a_single_process_run(calls, monkeypatch):
  _set(monkeypatch, num_processes=1)
  assert distributed.initialize() is False
  assert calls == []


def test_several_nodes_without_variables_use_cluster_auto_detection(calls):
  assert distributed.initialize(num_nodes=2) is True
  assert calls == [{"initialization_timeout": distributed.DEFAULT_INIT_TIMEOUT_S,
                    "heartbeat_timeout_seconds": distributed.DEFAULT_HEARTBEAT_TIMEOUT_S}]


@pytest.mark.parametrize("settings, message", [
    (("127.0.0.1:1234", 2, 2), "JAX_PROCESS_ID=2 is out of range: a job of 2 processes numbers them 0..1"),
    (("127.0.0.1:1234", 2, -1), "JAX_PROCESS_ID=-1 is out of range"),
    (("127.0.0.1:1234", 2, None), "JAX_PROCESS_ID not set"),
    (("127.0.0.1", 2, 1), "expected host:port of process 0"),
    (("no-such-host.invalid:1234", 2, 1), "the host 'no-such-host.invalid' is unknown"),
    (("127.0.0.1:1234", "two", 1), "JAX_NUM_PROCESSES='two': expected an integer"),
])
def test_impossible_settings_fail_at_once_naming_the_variable(calls, monkeypatch, settings, message):
  _set(monkeypatch, *settings)
  started = time.monotonic()
  with pytest.raises(distributed.DistributedSetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
    distributed.initialize()
  assert time.monotonic() - started < 5 and calls == []


def test_an_unreachable_coordinator_fails_after_the_timeout_naming_it(calls, monkeypatch):
  address = f"127.0.0.1:{launch.free_port()}"  # nothing listens there
  _set(monkeypatch, address, 2, 1)
  monkeypatch.setenv(distributed.INIT_TIMEOUT_ENV, "1")
  started = time.monotonic()
  with pytest.raises(distributed.DistributedSetupError,
                     match=f"process 1 of 2 could not reach the coordinator at {address} within 1 s"):
    distributed.initialize()
  assert time.monotonic() - started < 5 and calls == []


def test_process_zero_refuses_a_port_in_use(calls, monkeypatch):
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    _set(monkeypatch, f"127.0.0.1:{taken.getsockname()[1]}", 2, 0)
    with pytest.raises(distributed.DistributedSetupError, match="choose a free port"):
      distributed.initialize()
  assert calls == []


def test_interleave_restores_the_order_of_strided_shares():
  items = list(range(7))
  assert distributed.interleave([items[p::3] for p in range(3)]) == items
  assert distributed.interleave([[]]) == []


def test_one_process_shares_everything():
  devices = jax.devices()
  assert distributed.data_share(devices) == (0, 1)
  assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
  distributed.check_same_job(None, local_devices=1)  # nothing to compare with


def test_launcher_sets_the_coordinator_variables_per_process():
  environments = launch.process_environments(2, "host0:1234", nnodes=3, node_rank=1, gpus_per_process=2, base={})
  assert [(e["JAX_PROCESS_ID"], e["JAX_NUM_PROCESSES"], e["CUDA_VISIBLE_DEVICES"]) for e in environments] == [
      ("2", "6", "0,1"), ("3", "6", "2,3")]
  cpu = launch.process_environments(1, "127.0.0.1:5", cpu_devices=2,
                                    base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --other"})
  assert cpu[0]["JAX_PLATFORMS"] == "cpu"
  assert cpu[0]["XLA_FLAGS"] == "--other --xla_force_host_platform_device_count=2"


CHILD = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    rank, count = int(os.environ["JAX_PROCESS_ID"]), int(os.environ["JAX_NUM_PROCESSES"])
    behaviour, folder = sys.argv[1], pathlib.Path(sys.argv[2])
    def say(line):  # one write per line: the processes share a pipe, and unbuffered print writes "\\n" apart
      os.write(1, (line + "\\n").encode())
    if behaviour == "ok":
      sys.exit(0)
    if behaviour == "fail" and rank == 1:  # once the others are ready
      while len(list(folder.glob("ready-*"))) < count - 1:
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)
    signal.signal(signal.SIGTERM, lambda *_: (say(f"rank {rank} got SIGTERM"), sys.exit(3)))
    say(f"rank {rank} ready")
    (folder / f"ready-{rank}").touch()
    time.sleep(60)
""")


def _launch(tmp_path, behaviour, nproc=2):
  script = tmp_path / "child.py"
  script.write_text(CHILD)
  return subprocess.Popen([sys.executable, "-m", "centerpose_jax.launch", "--nproc", str(nproc), "--grace", "5",
                           str(script), behaviour, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1])))


def test_launcher_exits_zero_when_every_process_succeeds(tmp_path):
  assert _launch(tmp_path, "ok", nproc=3).wait(timeout=60) == 0


def test_a_killed_process_stops_the_others_and_the_job_fails(tmp_path):
  job = _launch(tmp_path, "fail", nproc=3)
  started = time.monotonic()
  out, err = job.communicate(timeout=60)
  assert job.returncode == 128 + signal.SIGKILL
  assert time.monotonic() - started < 30
  assert "process 1 was killed by SIGKILL; stopping the other 2 process(es)" in err
  assert "rank 0 got SIGTERM" in out and "rank 2 got SIGTERM" in out


def test_signals_are_forwarded_to_every_process(tmp_path):
  job = _launch(tmp_path, "wait")
  lines = [job.stdout.readline(), job.stdout.readline()]
  assert sorted(lines) == ["rank 0 ready\n", "rank 1 ready\n"]
  job.send_signal(signal.SIGTERM)
  out, _ = job.communicate(timeout=60)
  assert job.returncode == 3  # the children's own exit status for SIGTERM
  assert "rank 0 got SIGTERM" in out and "rank 1 got SIGTERM" in out
