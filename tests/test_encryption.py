"""Tests of encryption at rest (centerpose_jax/encryption.py)."""

import numpy as np
import pytest

from centerpose_jax import encryption

PAYLOAD = np.random.default_rng(0).bytes(100_000)


def test_round_trip_and_fresh_salt_per_call():
  sealed = encryption.encrypt_bytes(PAYLOAD, "nvidia_tlt")
  assert encryption.is_encrypted(sealed) and not encryption.is_encrypted(PAYLOAD)
  assert PAYLOAD[:64] not in sealed  # the content is not stored in the clear
  assert encryption.decrypt_bytes(sealed, "nvidia_tlt") == PAYLOAD
  assert encryption.decrypt_bytes(sealed, b"nvidia_tlt") == PAYLOAD  # str and its UTF-8 bytes are one key
  again = encryption.encrypt_bytes(PAYLOAD, "nvidia_tlt")
  assert again != sealed
  assert len(again) == len(sealed) == encryption.HEADER_BYTES + len(PAYLOAD) + encryption.GCM_TAG_BYTES


def test_wrong_key_is_a_clear_error():
  sealed = encryption.encrypt_bytes(PAYLOAD, "right key")
  with pytest.raises(encryption.WrongKeyError, match="encrypted with a different encryption_key"):
    encryption.decrypt_bytes(sealed, "wrong key")


@pytest.mark.parametrize("position", [encryption.HEADER_BYTES + 10, -1, len(encryption.MAGIC) + 1 + 3])
def test_damage_anywhere_is_detected(position):
  sealed = bytearray(encryption.encrypt_bytes(PAYLOAD, "key"))
  sealed[position] ^= 0x01
  with pytest.raises(encryption.EncryptionError):
    encryption.decrypt_bytes(bytes(sealed), "key")


def test_missing_key_and_foreign_data_are_clear_errors():
  sealed = encryption.encrypt_bytes(PAYLOAD, "key")
  with pytest.raises(encryption.EncryptionError, match="is encrypted; set encryption_key"):
    encryption.decrypt_bytes(sealed, None)
  with pytest.raises(encryption.EncryptionError, match="not encrypted by centerpose_jax"):
    encryption.decrypt_bytes(PAYLOAD, "key")
  with pytest.raises(encryption.EncryptionError, match="truncated"):
    encryption.decrypt_bytes(sealed[:encryption.HEADER_BYTES], "key")
  with pytest.raises(encryption.EncryptionError, match="non-empty string"):
    encryption.encrypt_bytes(PAYLOAD, "")


def test_file_helpers(tmp_path):
  plain, sealed = tmp_path / "model.onnx", tmp_path / "out" / "model.onnx.enc"
  encryption.write_file(plain, PAYLOAD)
  assert plain.read_bytes() == PAYLOAD
  assert encryption.read_file(plain, "any key") == PAYLOAD  # plain files read as they are
  encryption.encrypt_file(plain, sealed, "key")
  assert encryption.is_encrypted(sealed.read_bytes())
  assert encryption.read_file(sealed, "key") == PAYLOAD
  with pytest.raises(encryption.WrongKeyError, match=str(sealed)):
    encryption.read_file(sealed, "other")
  encryption.decrypt_file(sealed, sealed, "key")  # in place
  assert sealed.read_bytes() == PAYLOAD
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.onnx", "model.onnx.enc", "out"]  # no temp files
