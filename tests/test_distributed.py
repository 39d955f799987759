"""Multi-host start-up: `distributed.initialize` calls `jax.distributed.initialize` only when told to."""

import jax
import pytest

from centerpose_jax.training import distributed


@pytest.fixture
def calls(monkeypatch):
  recorded = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: recorded.append(kwargs))
  for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV):
    monkeypatch.delenv(name, raising=False)
  return recorded


def test_single_process_does_not_initialize(calls):
  assert distributed.initialize(num_nodes=1) is False
  assert calls == []


def test_environment_variables_start_a_multi_process_job(calls, monkeypatch):
  monkeypatch.setenv(distributed.COORDINATOR_ENV, "10.0.0.1:1234")
  monkeypatch.setenv(distributed.NUM_PROCESSES_ENV, "4")
  monkeypatch.setenv(distributed.PROCESS_ID_ENV, "2")
  assert distributed.initialize() is True
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 2}]


def test_one_process_in_the_environment_is_a_single_process_run(calls, monkeypatch):
  monkeypatch.setenv(distributed.NUM_PROCESSES_ENV, "1")
  assert distributed.initialize() is False
  assert calls == []


def test_several_nodes_without_variables_use_cluster_auto_detection(calls):
  assert distributed.initialize(num_nodes=2) is True
  assert calls == [{}]
