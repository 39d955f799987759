"""The errors that the entry points report as one message, without a traceback.

Leaf module: no project imports. Each class names a kind of user-facing problem; docs/troubleshooting.md lists
every message and what to do about it (tests/test_troubleshooting_doc.py keeps the two in step).
"""


class CenterPoseError(Exception):
  """A problem with the user's inputs or with the run (bad data, wrong key, diverged training, ...).

  train.py, evaluate.py, infer.py and export.py print its message and exit with status 1 (a config problem:
  2); other exceptions keep their traceback, since they are bugs. `--verbosity=1` prints the traceback of a
  CenterPoseError too.
  """


class InputNotFoundError(CenterPoseError, FileNotFoundError):
  """A file or folder the user named does not exist or holds nothing usable (no checkpoint, no images, ...)."""


class OutOfMemoryError(CenterPoseError, MemoryError):
  """The accelerator (or host) ran out of memory; the message says which settings to lower."""
