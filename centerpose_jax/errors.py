"""The base class of errors that the entry points report as a message, without a traceback."""


class CenterPoseError(Exception):
  """A problem with the user's inputs or with the run (bad data, wrong key, diverged training, ...).

  train.py, evaluate.py, infer.py and export.py print its message and exit with status 1; other exceptions
  keep their traceback, since they are bugs.
  """
