"""host_memory: the entry points' restart with malloc's huge pages and freed memory kept mapped."""

import json
import os
import subprocess
import sys

import pytest

from centerpose_jax import host_memory

# Runs as an entry point would, then has malloc hand out 64 MiB and writes it, twice, freeing it in between: the
# page faults each took, and whether JAX would dispatch CPU computations asynchronously.
_PROGRAM = r"""
import ctypes, json, os, resource, sys
from centerpose_jax import host_memory
host_memory.use_host_memory_settings("__main__", keep_freed_memory=sys.argv[1] == "train")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
faults = []
for _ in range(2):
  block = libc.malloc(ctypes.c_size_t(size))
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  ctypes.memset(block, 1, size)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  libc.free(ctypes.c_void_p(block))
import jax
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "faults": faults, "argv": sys.argv[1:],
                  "dispatch": os.environ.get("JAX_CPU_ENABLE_ASYNC_DISPATCH"),
                  "async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch")}))
"""
_TUNABLES = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"


def test_with_malloc_tunables_adds_the_missing_settings_and_keeps_the_others():
  assert host_memory.with_malloc_tunables({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert host_memory.with_malloc_tunables({}, keep_freed_memory=True) == {
      "GLIBC_TUNABLES": _TUNABLES, "JAX_CPU_ENABLE_ASYNC_DISPATCH": "false"}
  environ = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=5", "HOME": "/h"}
  assert host_memory.with_malloc_tunables(environ, keep_freed_memory=True) == {
      "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=5:glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0",
      "JAX_CPU_ENABLE_ASYNC_DISPATCH": "false", "HOME": "/h"}
  assert environ == {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=5", "HOME": "/h"}  # the argument is unchanged
  chosen = {"GLIBC_TUNABLES": _TUNABLES.replace("hugetlb=1", "hugetlb=0"), "JAX_CPU_ENABLE_ASYNC_DISPATCH": "true"}
  assert host_memory.with_malloc_tunables(chosen, keep_freed_memory=True) == chosen  # the user's own choices stay


def test_host_memory_environment_only_where_the_tunables_take_effect():
  wanted = {"GLIBC_TUNABLES": _TUNABLES, "JAX_CPU_ENABLE_ASYNC_DISPATCH": "false"}
  assert host_memory.host_memory_environment({}, True, (2, 36), "madvise") == wanted
  assert host_memory.host_memory_environment({}, False, (2, 36), "madvise") == {
      "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert host_memory.host_memory_environment({}, True, (2, 34), "madvise") == {}  # no hugetlb tunable before 2.35
  assert host_memory.host_memory_environment({}, True, (2, 36), "always") == {}  # the kernel does it already
  assert host_memory.host_memory_environment({}, True, (2, 36), "never") == {}
  assert host_memory.host_memory_environment({"CENTERPOSE_HUGE_PAGES": "0"}, True, (2, 36), "madvise") == {
      "CENTERPOSE_HUGE_PAGES": "0"}


def test_transparent_huge_pages_mode_reads_the_bracketed_word(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.transparent_huge_pages_mode(str(setting)) == "madvise"
  assert host_memory.transparent_huge_pages_mode(str(tmp_path / "missing")) is None


def test_use_host_memory_settings_does_nothing_when_imported(monkeypatch):
  monkeypatch.setattr(os, "execve", lambda *args: (_ for _ in ()).throw(AssertionError("restarted")))
  host_memory.use_host_memory_settings("train")


def _run(extra_env, entry_point="train"):
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "CENTERPOSE_HUGE_PAGES", "JAX_CPU_ENABLE_ASYNC_DISPATCH")}
  result = subprocess.run([sys.executable, "-c", _PROGRAM, entry_point], env={**env, **extra_env},
                          capture_output=True, text=True, timeout=60, check=True)
  return json.loads(result.stdout)


def test_the_restart_keeps_the_arguments_and_brings_huge_pages_and_kept_memory_where_the_machine_has_them():
  restarted, inference, opted_out = _run({}), _run({}, "infer"), _run({"CENTERPOSE_HUGE_PAGES": "0"})
  assert restarted["argv"] == opted_out["argv"] == ["train"]
  assert opted_out["tunables"] is None and opted_out["dispatch"] is None and opted_out["async_dispatch"]
  # one fault per 4 KiB page, both times: glibc maps a block this large afresh and unmaps it on free
  assert min(opted_out["faults"]) >= (64 << 20) // 4096
  if host_memory.host_memory_environment({}) == {}:  # this machine cannot take them: no restart
    assert restarted["tunables"] is None and inference["tunables"] is None
  else:
    assert restarted["tunables"] == _TUNABLES and restarted["dispatch"] == "false"
    assert not restarted["async_dispatch"]  # applied: JAX itself does not read the variable
    assert restarted["faults"][0] < opted_out["faults"][0] // 8  # 2 MiB pages: up to 512x fewer faults (543 here)
    assert restarted["faults"][1] < 16  # the freed block stayed mapped: the second one reuses it
    assert inference["tunables"] == "glibc.malloc.hugetlb=1" and inference["dispatch"] is None
    assert inference["async_dispatch"]
    assert min(inference["faults"]) > restarted["faults"][1]  # huge pages, mapped afresh each time


def test_a_dispatch_setting_of_the_users_own_is_applied_without_a_restart():
  opted_out_inline = _run({"CENTERPOSE_HUGE_PAGES": "0", "JAX_CPU_ENABLE_ASYNC_DISPATCH": "0"}, "infer")
  assert opted_out_inline["tunables"] is None and not opted_out_inline["async_dispatch"]


def test_apply_jax_dispatch_setting_names_the_variable_of_a_bad_value():
  with pytest.raises(ValueError, match="JAX_CPU_ENABLE_ASYNC_DISPATCH='sometimes'"):
    host_memory.apply_jax_dispatch_setting({"JAX_CPU_ENABLE_ASYNC_DISPATCH": "sometimes"})
  host_memory.apply_jax_dispatch_setting({})  # absent: JAX's default stays
