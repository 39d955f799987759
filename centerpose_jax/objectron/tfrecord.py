"""TFRecord files without TensorFlow: reading (every checksum verified) and writing.

A TFRecord file is a sequence of records, each framed as

  length      uint64, little-endian: the number of data bytes
  length_crc  uint32, little-endian: masked CRC-32C of the 8 length bytes
  data        `length` bytes (here a serialized tf.train.Example)
  data_crc    uint32, little-endian: masked CRC-32C of the data

where mask(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8, modulo 2**32 (TensorFlow's record format).
"""

import pathlib
import struct
from typing import Iterable, Iterator

import google_crc32c

from centerpose_jax import errors

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class CorruptRecordError(errors.CenterPoseError, ValueError):
  """A TFRecord file is truncated or fails a checksum; the message names the file, record and byte offset."""


def masked_crc32c(data: bytes) -> int:
  """TensorFlow's masked CRC-32C (Castagnoli) of `data`, as stored in a record's frame."""
  crc = google_crc32c.value(data)
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path) -> Iterator[bytes]:
  """Yields the data of each record of the TFRecord file at `path`, in file order.

  Raises:
    CorruptRecordError: the file ends inside a record, or a length or data checksum does not match (raised
      when that record is reached; the records before it have been yielded).
  """
  path = pathlib.Path(path)
  with open(path, "rb") as stream:
    index, offset = 0, 0
    while True:
      header = stream.read(_LENGTH.size + _CRC.size)
      if not header:
        return
      where = f"{path}: record {index} at byte {offset}"
      if len(header) < _LENGTH.size + _CRC.size:
        raise CorruptRecordError(f"{where}: file ends inside the record header (truncated download?)")
      length_bytes = header[:_LENGTH.size]
      (length_crc,) = _CRC.unpack(header[_LENGTH.size:])
      if masked_crc32c(length_bytes) != length_crc:
        raise CorruptRecordError(f"{where}: length checksum mismatch (corrupt file; download it again)")
      (length,) = _LENGTH.unpack(length_bytes)
      data = stream.read(length)
      footer = stream.read(_CRC.size)
      if len(data) < length or len(footer) < _CRC.size:
        raise CorruptRecordError(f"{where}: file ends inside the record's {length} data bytes (truncated download?)")
      if masked_crc32c(data) != _CRC.unpack(footer)[0]:
        raise CorruptRecordError(f"{where}: data checksum mismatch (corrupt file; download it again)")
      yield data
      index += 1
      offset += len(header) + length + _CRC.size


def write_records(path, records: Iterable[bytes]) -> int:
  """Writes `records` (bytes each) as a TFRecord file at `path`; returns how many were written."""
  count = 0
  with open(path, "wb") as stream:
    for data in records:
      length_bytes = _LENGTH.pack(len(data))
      stream.write(length_bytes + _CRC.pack(masked_crc32c(length_bytes)) + data + _CRC.pack(masked_crc32c(data)))
      count += 1
  return count
