"""Transparent huge pages for the host memory the program allocates (above all, XLA:CPU's buffers).

XLA:CPU allocates the buffers of every call (a train step's temporaries: GiBs) with the C library's malloc
and frees them when the call ends. glibc serves blocks that large with fresh anonymous mappings and unmaps
them on free, so each call faults all of that memory in again, one 4 KiB page at a time: DLA34's train step
at batch 2 of 512x512 takes about 530,000 page faults, several tenths of a second of a 4-5 s step on the
2-core development machine (docs/benchmarks.md, "Huge pages"). With glibc's tunable `glibc.malloc.hugetlb=1`
malloc marks its mappings for transparent huge pages (madvise), and the same memory arrives in 2 MiB pages
(about 3,000 faults per step).

glibc reads its tunables (the GLIBC_TUNABLES variable) once, when the process starts; so `use_huge_pages`,
called by the entry points before they import anything large, restarts the program in place (`os.execve`:
same process id, arguments and environment, plus the tunable) when the tunable is missing and can take
effect: Linux with glibc 2.35 or newer and transparent huge pages in "madvise" mode (in "always" mode the
kernel already backs large mappings with huge pages; in "never" mode it cannot). Setting
CENTERPOSE_HUGE_PAGES=0 turns it off; a glibc.malloc.hugetlb value already in GLIBC_TUNABLES is kept.
"""

import os
import platform
import sys
from typing import Mapping, Optional

TUNABLES_ENV = "GLIBC_TUNABLES"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT_ENV = "CENTERPOSE_HUGE_PAGES"  # "0": leave malloc as it is
TRANSPARENT_HUGE_PAGES = "/sys/kernel/mm/transparent_hugepage/enabled"
_MIN_GLIBC = (2, 35)  # the first glibc with the glibc.malloc.hugetlb tunable


def with_huge_pages(environ: Mapping[str, str]) -> dict:
  """A copy of `environ` whose GLIBC_TUNABLES (colon-separated name=value pairs) asks malloc for transparent
  huge pages; other tunables, and a glibc.malloc.hugetlb value set already, are kept."""
  environ = dict(environ)
  tunables = [t for t in environ.get(TUNABLES_ENV, "").split(":") if t]
  if not any(t.split("=")[0] == HUGE_PAGES_TUNABLE for t in tunables):
    environ[TUNABLES_ENV] = ":".join(tunables + [f"{HUGE_PAGES_TUNABLE}=1"])
  return environ


def transparent_huge_pages_mode(path: str = TRANSPARENT_HUGE_PAGES) -> Optional[str]:
  """The kernel's transparent huge page mode ("always", "madvise" or "never"), None where it has none."""
  try:
    with open(path, encoding="ascii") as setting:
      return next((w[1:-1] for w in setting.read().split() if w.startswith("[")), None)
  except OSError:
    return None


def _glibc_version() -> Optional[tuple]:
  library, version = platform.libc_ver()
  if library != "glibc" or not version:
    return None
  return tuple(int(part) for part in version.split(".")[:2])


def huge_pages_environment(environ: Mapping[str, str], glibc_version: Optional[tuple] = None,
                           thp_mode: Optional[str] = None) -> dict:
  """The environment a program should run with: `with_huge_pages(environ)` where the tunable takes effect
  (glibc >= 2.35, transparent huge pages in "madvise" mode, CENTERPOSE_HUGE_PAGES not "0"), else a copy of
  `environ`. `glibc_version` and `thp_mode` default to this machine's."""
  glibc_version = glibc_version or _glibc_version()
  thp_mode = thp_mode or transparent_huge_pages_mode()
  if environ.get(OPT_OUT_ENV, "1") == "0" or glibc_version is None or glibc_version < _MIN_GLIBC:
    return dict(environ)
  return with_huge_pages(environ) if thp_mode == "madvise" else dict(environ)


def use_huge_pages(module_name: str) -> None:
  """Restarts the running program with malloc's transparent huge pages when they are missing (module docstring).

  Does nothing unless `module_name` is "__main__" (an entry point run as a program, not imported). Call it
  first thing: the restart repeats whatever ran before it.
  """
  if module_name != "__main__" or not sys.executable:
    return
  environ = huge_pages_environment(os.environ)
  if environ != dict(os.environ):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
