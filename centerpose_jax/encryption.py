"""Encryption at rest of exported models and checkpoint files with the config's `encryption_key`.

A key string is stretched with scrypt over a random per-file salt into a 256-bit AES key plus a 128-bit
key-check value; the payload is sealed with AES-256-GCM. File layout (every field fixed-size):

  MAGIC (8 bytes) | format version (1) | salt (16) | key check (16) | nonce (12) | ciphertext + GCM tag (16)

The header is authenticated as GCM associated data. The key-check value tells a wrong key apart from a
damaged file before any decryption is attempted. Plain (unencrypted) files are read as they are, so a config
with a key set still reads models exported without one.
"""

import os
import pathlib
import secrets
from typing import Optional, Union

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from centerpose_jax import errors

MAGIC = b"CPJAXENC"
FORMAT_VERSION = 1
SALT_BYTES = 16
KEY_CHECK_BYTES = 16
NONCE_BYTES = 12
AES_KEY_BYTES = 32
GCM_TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 1 + SALT_BYTES + KEY_CHECK_BYTES + NONCE_BYTES
# scrypt cost: 2**15 iterations of 8 x 128-byte blocks (32 MiB, about 0.1 s per file on one core).
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1

Key = Union[str, bytes]


class EncryptionError(errors.CenterPoseError, ValueError):
  """Data that cannot be encrypted or decrypted as asked (missing key, damaged or foreign file)."""


class WrongKeyError(EncryptionError):
  """The key does not match the one the data was encrypted with."""


class MissingKeyError(EncryptionError):
  """The data is encrypted and no encryption_key is set."""


def _key_bytes(key: Key) -> bytes:
  if isinstance(key, str):
    key = key.encode("utf-8")
  if not isinstance(key, bytes) or not key:
    raise EncryptionError("encryption_key must be a non-empty string")
  return key


def _derive(key: Key, salt: bytes):
  """(AES key, key-check value) of `key` with `salt`."""
  material = Scrypt(salt=salt, length=AES_KEY_BYTES + KEY_CHECK_BYTES, n=2**SCRYPT_LOG2_N, r=SCRYPT_R,
                    p=SCRYPT_P).derive(_key_bytes(key))
  return material[:AES_KEY_BYTES], material[AES_KEY_BYTES:]


def is_encrypted(data: bytes) -> bool:
  """Whether `data` starts with this module's header."""
  return data[:len(MAGIC)] == MAGIC


def is_encrypted_file(path) -> bool:
  """Whether the file at `path` starts with this module's header (reads only the header's first bytes)."""
  with open(path, "rb") as file:
    return is_encrypted(file.read(len(MAGIC)))


def encrypt_bytes(data: bytes, key: Key) -> bytes:
  """`data` sealed with `key` (fresh salt and nonce each call, so equal inputs give different outputs)."""
  salt = secrets.token_bytes(SALT_BYTES)
  nonce = secrets.token_bytes(NONCE_BYTES)
  aes_key, key_check = _derive(key, salt)
  header = MAGIC + bytes([FORMAT_VERSION]) + salt + key_check + nonce
  return header + AESGCM(aes_key).encrypt(nonce, bytes(data), header)


def decrypt_bytes(data: bytes, key: Optional[Key], what: str = "data") -> bytes:
  """The plaintext of `encrypt_bytes(plaintext, key)`.

  Args:
    data: an encrypted payload.
    key: the key it was encrypted with.
    what: how error messages name the data (e.g. a file path).

  Raises:
    WrongKeyError: when `key` is not the key the data was encrypted with.
    MissingKeyError: when no key is given.
    EncryptionError: when the data is not an encrypted payload or is damaged.
  """
  if not is_encrypted(data):
    raise EncryptionError(f"{what} is not encrypted by centerpose_jax (no {MAGIC!r} header)")
  if len(data) < HEADER_BYTES + GCM_TAG_BYTES:
    raise EncryptionError(f"{what} is truncated ({len(data)} bytes)")
  if data[len(MAGIC)] != FORMAT_VERSION:
    raise EncryptionError(f"{what} has encryption format version {data[len(MAGIC)]}, this version reads "
                          f"{FORMAT_VERSION}")
  if not key:
    raise MissingKeyError(f"{what} is encrypted; set encryption_key to the key it was written with")
  offset = len(MAGIC) + 1
  salt = data[offset:offset + SALT_BYTES]
  offset += SALT_BYTES
  stored_check = data[offset:offset + KEY_CHECK_BYTES]
  offset += KEY_CHECK_BYTES
  nonce = data[offset:offset + NONCE_BYTES]
  aes_key, key_check = _derive(key, salt)
  if not secrets.compare_digest(key_check, stored_check):
    raise WrongKeyError(f"{what} was encrypted with a different encryption_key; check that encryption_key is "
                        f"the key it was written with")
  try:
    return AESGCM(aes_key).decrypt(nonce, data[HEADER_BYTES:], data[:HEADER_BYTES])
  except crypto_exceptions.InvalidTag:
    raise EncryptionError(f"{what} is damaged: the key is right but the content fails authentication") from None


def write_file(path, data: bytes, key: Optional[Key] = None) -> pathlib.Path:
  """Writes `data` to `path`, encrypted when `key` is set; atomic (a temporary file renamed into place)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  payload = encrypt_bytes(data, key) if key else bytes(data)
  temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
  try:
    temporary.write_bytes(payload)
    os.replace(temporary, path)
  finally:
    temporary.unlink(missing_ok=True)
  return path


def read_file(path, key: Optional[Key] = None) -> bytes:
  """The content of `path`, decrypted when it is encrypted (see `decrypt_bytes` for the errors)."""
  data = pathlib.Path(path).read_bytes()
  return decrypt_bytes(data, key, what=str(path)) if is_encrypted(data) else data


def encrypt_file(source, destination, key: Key) -> pathlib.Path:
  """Writes the encrypted content of `source` to `destination` (may be the same path)."""
  return write_file(destination, pathlib.Path(source).read_bytes(), _key_bytes(key))


def decrypt_file(source, destination, key: Key) -> pathlib.Path:
  """Writes the plaintext of the encrypted file `source` to `destination` (may be the same path)."""
  data = pathlib.Path(source).read_bytes()
  return write_file(destination, decrypt_bytes(data, key, what=str(source)))
