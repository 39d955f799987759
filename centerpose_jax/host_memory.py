"""Host memory for XLA:CPU: malloc's transparent huge pages, and freed memory kept mapped between calls.

XLA:CPU allocates the buffers of every call (a train step's temporaries: GiBs, fan_small's at 2x512 one block of
5.8 GB) with the C library's malloc and frees them when the call ends. glibc serves blocks that large with fresh
anonymous mappings and unmaps them on free, so each call faults all of that memory in again: DLA34's train step
at batch 2 of 512x512 took about 530,000 page faults, several tenths of a second of a 4-5 s step on the 2-core
development machine, and in that VM's slow phases the fan_small step spent 2.6-3.0 s per step in the kernel
(docs/benchmarks.md, "Huge pages" and "Versus PyTorch"). Two remedies, both through glibc's tunables:

- `glibc.malloc.hugetlb=1`: malloc marks its mappings for transparent huge pages (madvise), and the same memory
  arrives in 2 MiB pages (about 3,000 faults per step).
- For training (`keep_freed_memory`): `glibc.malloc.mmap_max=0` and a `glibc.malloc.trim_threshold` of 1 TiB, so
  that blocks come from the heap, which free never shrinks, and the next step reuses memory already mapped.
  glibc's per-thread arenas still map blocks above 64 MiB on their own, so this holds for blocks allocated by
  the main thread: XLA:CPU allocates a call's buffers on the calling thread when JAX runs CPU computations
  inline, which JAX_CPU_ENABLE_ASYNC_DISPATCH=false asks for (computations on several CPU devices stay
  asynchronous). JAX 0.10 does not read that variable itself (its `jax_cpu_enable_async_dispatch` option is a
  flag that takes no value from the environment), so `use_host_memory_settings` applies it
  (`apply_jax_dispatch_setting`). fan_small train step at 2x512: system time 2.8 -> 0.1 s per step, 5 % faster
  side by side (docs/benchmarks.md, twelfth and thirteenth sessions). The inference forward measured 3 % slower
  with the kept-memory tunables, so the inference entry points keep the defaults. The process keeps its peak
  memory until it ends.

glibc reads its tunables (the GLIBC_TUNABLES variable) once, when the process starts; so
`use_host_memory_settings`, called by the entry points before they import anything large, restarts the program
in place (`os.execve`: same process id, arguments and environment, plus the tunables and the JAX setting) when
they are missing and can take effect: Linux with glibc 2.35 or newer and transparent huge pages in "madvise" mode
(in "always" mode the kernel already backs large mappings with huge pages; in "never" mode it cannot). Setting
CENTERPOSE_HUGE_PAGES=0 turns all of it off; tunables already in GLIBC_TUNABLES, and a JAX_CPU_ENABLE_ASYNC_DISPATCH
already set, are kept.
"""

import os
import platform
import sys
from typing import Mapping, Optional

TUNABLES_ENV = "GLIBC_TUNABLES"
# glibc tunable -> value (module docstring): huge pages; freed memory kept mapped (with inline dispatch).
HUGE_PAGES_TUNABLES = {"glibc.malloc.hugetlb": "1"}
KEEP_FREED_TUNABLES = {"glibc.malloc.mmap_max": "0", "glibc.malloc.trim_threshold": str(1 << 40)}
INLINE_DISPATCH = ("JAX_CPU_ENABLE_ASYNC_DISPATCH", "false")  # XLA:CPU allocates on the calling thread
OPT_OUT_ENV = "CENTERPOSE_HUGE_PAGES"  # "0": leave malloc and JAX as they are
TRANSPARENT_HUGE_PAGES = "/sys/kernel/mm/transparent_hugepage/enabled"
_MIN_GLIBC = (2, 35)  # the first glibc with the glibc.malloc.hugetlb tunable


def with_malloc_tunables(environ: Mapping[str, str], keep_freed_memory: bool = False) -> dict:
  """A copy of `environ` whose GLIBC_TUNABLES (colon-separated name=value pairs) holds `HUGE_PAGES_TUNABLES`, and
  with `keep_freed_memory` also `KEEP_FREED_TUNABLES` and JAX's inline CPU dispatch (`INLINE_DISPATCH`);
  tunables and the JAX variable set already keep their values."""
  environ = dict(environ)
  wanted = {**HUGE_PAGES_TUNABLES, **(KEEP_FREED_TUNABLES if keep_freed_memory else {})}
  tunables = [t for t in environ.get(TUNABLES_ENV, "").split(":") if t]
  present = {t.split("=")[0] for t in tunables}
  environ[TUNABLES_ENV] = ":".join(tunables + [f"{name}={value}" for name, value in wanted.items()
                                               if name not in present])
  if keep_freed_memory:
    environ.setdefault(*INLINE_DISPATCH)
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


def host_memory_environment(environ: Mapping[str, str], keep_freed_memory: bool = False,
                            glibc_version: Optional[tuple] = None, thp_mode: Optional[str] = None) -> dict:
  """The environment a program should run with: `with_malloc_tunables(environ, keep_freed_memory)` where the
  tunables take effect (glibc >= 2.35, transparent huge pages in "madvise" mode, CENTERPOSE_HUGE_PAGES not "0"),
  else a copy of `environ`. `glibc_version` and `thp_mode` default to this machine's."""
  glibc_version = glibc_version or _glibc_version()
  thp_mode = thp_mode or transparent_huge_pages_mode()
  if environ.get(OPT_OUT_ENV, "1") == "0" or glibc_version is None or glibc_version < _MIN_GLIBC:
    return dict(environ)
  return with_malloc_tunables(environ, keep_freed_memory) if thp_mode == "madvise" else dict(environ)


def use_host_memory_settings(module_name: str, keep_freed_memory: bool = False) -> None:
  """Restarts the running program with `host_memory_environment(os.environ, keep_freed_memory)` when its settings
  are missing (module docstring), then applies the JAX setting of its environment (`apply_jax_dispatch_setting`);
  `keep_freed_memory` for training.

  Does nothing unless `module_name` is "__main__" (an entry point run as a program, not imported). Call it
  first thing: the restart repeats whatever ran before it.
  """
  if module_name != "__main__" or not sys.executable:
    return
  environ = host_memory_environment(os.environ, keep_freed_memory)
  if environ != dict(os.environ):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
  apply_jax_dispatch_setting(os.environ)


def apply_jax_dispatch_setting(environ: Mapping[str, str]) -> None:
  """Sets JAX's `jax_cpu_enable_async_dispatch` option from JAX_CPU_ENABLE_ASYNC_DISPATCH in `environ`, when it is
  there ("false", "0", "no", "off" or "true", "1", "yes", "on"), before JAX creates its CPU client, which reads
  the option once.

  Raises:
    ValueError: the variable holds anything else.
  """
  name, _ = INLINE_DISPATCH
  value = environ.get(name)
  if value is None:
    return
  choices = {"false": False, "0": False, "no": False, "off": False, "true": True, "1": True, "yes": True, "on": True}
  enabled = choices.get(value.strip().lower())
  if enabled is None:
    raise ValueError(f"environment variable {name}={value!r}: expected true or false")
  # Imported here, after any restart; the entry points import JAX next anyway.
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_enable_async_dispatch", enabled)
