"""The entry points' command line: the `--config` flag and `run`, which validates the config for a task, calls
the task and turns its errors into one-line messages.

`--config` takes a Python config file (`configs/*.py`, whose `get_config()` returns a ConfigDict) or a TAO
experiment spec (`*.yaml`), and every field can be overridden on the command line
(`--config.train.num_epochs=3`). Before any work starts, `config_validation.validate(config, task)` checks the
whole config and reports every problem at once.
"""

import os
import sys
import traceback
from typing import Callable, Optional

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags

from centerpose_jax import config as config_lib
from centerpose_jax import config_validation
from centerpose_jax import errors
from centerpose_jax.config import ConfigError
from centerpose_jax.convert import tao_spec

SPEC_EXTENSIONS = (".yaml", ".yml")


class _ConfigOrSpecParser(config_flags.ConfigFileFlagParser):
  """`--config` parser: a `.py` config file as ml_collections does, or a TAO `.yaml` experiment spec."""

  def parse(self, path):
    if isinstance(path, str) and not os.path.isfile(path):
      raise ConfigError([f"--config: {path!r} is not a file (a configs/*.py config or a TAO spec .yaml)"])
    if isinstance(path, str) and path.lower().endswith(SPEC_EXTENSIONS):
      config = tao_spec.load_tao_spec(path)
      config.lock()
      return config
    return super().parse(path)


class _ConfigFlag(config_flags._ConfigFlag):  # pylint: disable=protected-access
  """ml_collections' config flag, with an unknown override field reported as a ConfigError (section name and
  close matches) instead of an AttributeError traceback.

  Without `--config` on the command line the default file is parsed (with the overrides) when the flag is
  defined, at import time; a problem found then is kept in `deferred_error` and reported by `run`.
  """

  deferred_error: Optional[errors.CenterPoseError] = None

  def _parse(self, argument):
    try:
      return super()._parse(argument)
    except (AttributeError, KeyError) as error:
      config = self.parser.parse(argument)
      problems = [problem for path in self._GetOverrides(self._GetArgv())
                  if (problem := config_lib.unknown_field_problem(config, path)) is not None]
      if problems:
        raise ConfigError(problems) from error
      raise

  def _set_default(self, default):
    try:
      super()._set_default(default)
    except errors.CenterPoseError as error:
      self.deferred_error = error
      self.default = self.value = None


DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "configs", "default.py")


def define_config_flag(name: str = "config", default: str = DEFAULT_CONFIG_FILE) -> flags.FlagHolder:
  """Defines `--<name>`: a config file (`.py`) or a TAO spec (`.yaml`), with per-field overrides.

  The help text lists every overridable field (generated from the defaults, `config.get_config()`, so it cannot
  drift).
  """
  fields = ", ".join(f"--{name}.{f}" for f in config_lib.config_fields(config_lib.get_config()))
  flag = _ConfigFlag(
      parser=_ConfigOrSpecParser(name=name, lock_config=True),
      serializer=flags.ArgumentSerializer(),
      name=name,
      default=default,
      help_string="Config file (configs/*.py) or TAO experiment spec (*.yaml); override any field with "
                  f"--{name}.<section>.<field>=<value>. Fields (see docs/configuration.md): {fields}",
      flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)


def _out_of_memory_hint(config: config_dict.ConfigDict, task: str) -> str:
  """What to lower after an out-of-memory error in `task`."""
  batch = f"dataset.batch_size (now {config.dataset.batch_size} per device)"
  if task == "train":
    return (f"lower {batch} or dataset.input_res (now {config.dataset.input_res}); keep the global batch with "
            f"train.grad_accumulation_steps, or use train.precision=bf16")
  if task == "export":
    return f"lower export.batch_size (now {config.export.batch_size}) or set export.on_cpu=True"
  return f"lower {batch}"


def _is_out_of_memory(error: BaseException) -> bool:
  """An XLA RESOURCE_EXHAUSTED error (device or host allocation failed) or a Python MemoryError."""
  if isinstance(error, MemoryError):
    return True
  return type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(error)


def _report(program: str, message: BaseException, cause: BaseException, verbose: bool) -> None:
  """Prints `program: error: message`, after the traceback of `cause` when `verbose`."""
  if verbose:
    traceback.print_exception(cause)
  print(f"{program}: error: {message}", file=sys.stderr)


def run(main: Callable[[config_dict.ConfigDict], None], task: str, config_flag: flags.FlagHolder) -> None:
  """Runs an entry point: parses flags, validates the config for `task`, then calls `main(config)`.

  A problem with the flags or the config (unknown field, bad value, missing file) is printed without a
  traceback and exits with status 2; a `CenterPoseError` raised by the work (bad data, wrong key, diverged
  training, ...) or an out-of-memory error (with what to lower) is printed and exits with status 1. With
  `--verbosity=1` (or higher) the traceback is printed too. The INFO logs of the libraries underneath (Orbax,
  jax) are hidden unless `--verbosity` is given.
  """
  program = os.path.basename(sys.argv[0])

  def verbose() -> bool:
    return flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 1

  def parse_flags(argv):
    try:
      deferred = flags.FLAGS[config_flag.name].deferred_error
      if deferred is not None:
        raise deferred
      return flags.FLAGS(argv)
    except (flags.Error, errors.CenterPoseError) as error:
      cause = error if isinstance(error, errors.CenterPoseError) else error.__context__
      message = cause if isinstance(cause, errors.CenterPoseError) else f"{error} (--helpfull lists every flag)"
      print(f"{program}: {message}", file=sys.stderr)
      sys.exit(2)

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    try:
      config = config_validation.validate(config_flag.value, task)
    except ConfigError as error:
      print(f"{program}: {error}", file=sys.stderr)
      sys.exit(2)
    try:
      main(config)
    except errors.CenterPoseError as error:
      _report(program, error, error, verbose())
      sys.exit(1)
    except Exception as error:  # pylint: disable=broad-except
      if not _is_out_of_memory(error):
        raise
      first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      message = errors.OutOfMemoryError(f"out of memory ({first_line}): {_out_of_memory_hint(config, task)}")
      _report(program, message, error, verbose())
      sys.exit(1)

  app.run(_main, flags_parser=parse_flags)


