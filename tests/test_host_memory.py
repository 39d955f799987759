"""host_memory: the entry points' restart with malloc's transparent huge pages."""

import json
import os
import subprocess
import sys

from centerpose_jax import host_memory

# Runs as an entry point would, then has malloc hand out 64 MiB and writes it: the page faults that took.
_PROGRAM = r"""
import ctypes, json, os, resource, sys
from centerpose_jax import host_memory
host_memory.use_huge_pages("__main__")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
block = libc.malloc(ctypes.c_size_t(size))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(block, 1, size)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "faults": faults, "argv": sys.argv[1:]}))
"""


def test_with_huge_pages_adds_the_tunable_and_keeps_the_others():
  assert host_memory.with_huge_pages({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
  environ = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=5", "HOME": "/h"}
  assert host_memory.with_huge_pages(environ) == {
      "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=5:glibc.malloc.hugetlb=1", "HOME": "/h"}
  assert environ["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=5"  # the argument is not changed
  chosen = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}  # the user's own choice stays
  assert host_memory.with_huge_pages(chosen) == chosen


def test_huge_pages_environment_only_where_the_tunable_takes_effect():
  wanted = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert host_memory.huge_pages_environment({}, (2, 36), "madvise") == wanted
  assert host_memory.huge_pages_environment({}, (2, 34), "madvise") == {}  # no such tunable before 2.35
  assert host_memory.huge_pages_environment({}, (2, 36), "always") == {}  # the kernel does it already
  assert host_memory.huge_pages_environment({}, (2, 36), "never") == {}
  assert host_memory.huge_pages_environment({"CENTERPOSE_HUGE_PAGES": "0"}, (2, 36), "madvise") == {
      "CENTERPOSE_HUGE_PAGES": "0"}


def test_transparent_huge_pages_mode_reads_the_bracketed_word(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.transparent_huge_pages_mode(str(setting)) == "madvise"
  assert host_memory.transparent_huge_pages_mode(str(tmp_path / "missing")) is None


def test_use_huge_pages_does_nothing_when_imported(monkeypatch):
  monkeypatch.setattr(os, "execve", lambda *args: (_ for _ in ()).throw(AssertionError("restarted")))
  host_memory.use_huge_pages("train")


def _run(extra_env):
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "CENTERPOSE_HUGE_PAGES")}
  result = subprocess.run([sys.executable, "-c", _PROGRAM, "an-argument"], env={**env, **extra_env},
                          capture_output=True, text=True, timeout=60, check=True)
  return json.loads(result.stdout)


def test_the_restart_keeps_the_arguments_and_brings_huge_pages_where_the_machine_has_them():
  restarted, opted_out = _run({}), _run({"CENTERPOSE_HUGE_PAGES": "0"})
  assert restarted["argv"] == opted_out["argv"] == ["an-argument"]
  assert opted_out["tunables"] is None
  assert opted_out["faults"] >= (64 << 20) // 4096  # one fault per 4 KiB page
  if host_memory.huge_pages_environment({}) == {}:  # this machine cannot take them: no restart
    assert restarted["tunables"] is None
  else:
    assert restarted["tunables"] == "glibc.malloc.hugetlb=1"
    assert restarted["faults"] < opted_out["faults"] // 8  # 2 MiB pages: up to 512x fewer faults (543 here)
