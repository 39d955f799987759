"""What memory costs when a process gets it again: reused at once, or after a pause (freed memory handed back).

  python bench/memory_refault.py                  # 2 GiB, pauses of 0 and 15 s, 3 rounds

Each round allocates --gib GiB (numpy), writes it once (the first touch: the kernel faults every page in), frees
it and sleeps --pause seconds before the next round. On a bare machine a first touch costs about the same after
any pause. On a virtual machine that hands freed guest memory back to its host (free page reporting, a memory
balloon), memory touched again after a pause has to come from the host again: the 2-core development machine
took about 0.1 s per GiB right after a free and 2-3 s per GiB after 10 s (docs/benchmarks.md). That is why
`bench/versus_pytorch.py` times each call right after an untimed call of its own side: a training step that
follows another reuses the memory the previous one freed.
"""

import argparse
import statistics
import time

import numpy as np


def first_touch_seconds(gib: float) -> float:
  """Seconds to allocate `gib` GiB and write every byte once."""
  start = time.perf_counter()
  block = np.empty(int(gib * 2**30) // 8)
  block.fill(1.0)
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gib", type=float, default=2.0, help="memory allocated and touched per round")
  parser.add_argument("--pause", type=float, action="append", help="seconds between rounds (repeatable; default 0, 15)")
  parser.add_argument("--rounds", type=int, default=3, help="rounds per pause, after one untimed round")
  args = parser.parse_args(argv)
  print(f"{'pause s':>8s} {'s per GiB (median)':>19s}  rounds")
  for pause in args.pause or (0.0, 15.0):
    first_touch_seconds(args.gib)
    times = []
    for _ in range(args.rounds):
      time.sleep(pause)
      times.append(first_touch_seconds(args.gib) / args.gib)
    print(f"{pause:8.0f} {statistics.median(times):19.2f}  {', '.join(f'{t:.2f}' for t in times)}", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
