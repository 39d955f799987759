"""Shared test fixtures.

The TAO reference fixtures live outside the repository, in ``../shared/fixtures`` (override with the
``CENTERPOSE_FIXTURES`` environment variable). In CI (``CI=true``) a missing folder is a failure; elsewhere
the tests that need it are skipped with the reason.
"""

import os
import pathlib

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _fixtures_root() -> pathlib.Path:
  override = os.environ.get("CENTERPOSE_FIXTURES")
  if override:
    return pathlib.Path(override)
  return _REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
  """Root of the shared fixtures: contains ``tao_reference/`` and ``real/``."""
  root = _fixtures_root()
  if not (root / "tao_reference").is_dir():
    message = (f"shared fixtures not found at {root} (set CENTERPOSE_FIXTURES to the folder "
               "holding tao_reference/ and real/)")
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(message)
    pytest.skip(message)
  return root


@pytest.fixture(scope="session")
def tao_reference(fixtures_dir) -> pathlib.Path:
  """``fixtures/tao_reference``: golden numbers produced by TAO's PyTorch implementation."""
  return fixtures_dir / "tao_reference"


@pytest.fixture(scope="session")
def real_fixtures(fixtures_dir) -> pathlib.Path:
  """``fixtures/real``: real Objectron frames and labels."""
  return fixtures_dir / "real"
