"""Read TensorFlow (v1 "V2 format") checkpoints with numpy alone.

A checkpoint ``PREFIX`` is two files:

- ``PREFIX.index``: an SSTable (the LevelDB table format) mapping each variable name to a
  serialised ``BundleEntryProto`` (dtype, shape, shard id, byte offset, byte size, crc32c).
  The entry with the empty key holds the ``BundleHeaderProto`` (number of shards, endianness).
- ``PREFIX.data-00000-of-0000N``: the raw little-endian tensor bytes, concatenated.

Only what tensor-bundle writers produce is supported: uncompressed blocks, unsliced tensors,
numeric dtypes. Anything else raises :class:`CheckpointError` naming the file and variable.
TensorFlow is not needed (nor imported).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError

# TensorFlow DataType enum values -> numpy dtypes (tensorflow/core/framework/types.proto).
_DTYPES = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
    9: np.int64, 10: np.bool_, 14: None,  # 14 = bfloat16 (unsupported)
    17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64,
}
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes crc


class CheckpointError(BenchmarkError, ValueError):
    """A checkpoint file that cannot be read (message names the file and the problem)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode a protobuf message into ``(field_number, wire_type, value)`` triples."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def _block_entries(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one SSTable block (prefix-compressed keys, restart array at the end)."""
    if data[offset + size] != 0:
        raise CheckpointError(f"{path}: compressed SSTable blocks are not supported")
    block = data[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _read_index(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    if len(data) < _FOOTER_SIZE:
        raise CheckpointError(f"{path}: too small to be a checkpoint index")
    footer = data[-_FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (bad SSTable magic)")
    pos = 0
    _meta_off, pos = _varint(footer, pos)
    _meta_size, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entries: dict[str, bytes] = {}
    for _key, handle in _block_entries(data, index_off, index_size, path):
        block_off, p = _varint(handle, 0)
        block_size, _ = _varint(handle, p)
        for key, value in _block_entries(data, block_off, block_size, path):
            entries[key.decode("utf-8")] = value
    return entries


def _parse_entry(value: bytes) -> dict:
    entry = {"dtype": 1, "shape": [], "shard_id": 0, "offset": 0, "size": 0, "slices": False}
    for field, _wire, v in _proto_fields(value):
        if field == 1:
            entry["dtype"] = v
        elif field == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            for f2, _w2, dim in _proto_fields(v):  # type: ignore[arg-type]
                if f2 == 2:
                    size = next((d for f3, _w3, d in _proto_fields(dim) if f3 == 1), 0)  # type: ignore[arg-type]
                    entry["shape"].append(int(size))
        elif field == 3:
            entry["shard_id"] = v
        elif field == 4:
            entry["offset"] = v
        elif field == 5:
            entry["size"] = v
        elif field == 7:
            entry["slices"] = True
    return entry


def read_tf_checkpoint(prefix: str | Path, skip: tuple[str, ...] = ("/Adam",)) -> dict[str, np.ndarray]:
    """Read every variable of a TF checkpoint into numpy arrays.

    Parameters
    ----------
    prefix: the checkpoint prefix, i.e. the path without ``.index`` (for musicnn's
        checkpoints, whose files are named ``.index`` and ``.data-00000-of-00001`` inside a
        folder, pass ``folder / ""`` or the folder with a trailing slash).
    skip: variables whose name contains any of these substrings are not read (the default
        skips Adam optimiser slots).

    Returns
    -------
    ``{variable name: array}`` with the checkpoint's dtype and shape (TF layouts: conv kernels
    ``[kh, kw, in, out]``, dense kernels ``[in, out]``).
    """
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: checkpoint index not found; pass the checkpoint "
                              "prefix (the path without '.index')")
    entries = _read_index(index_path)
    header = entries.pop("", b"")
    num_shards = 1
    for field, _wire, v in _proto_fields(header):
        if field == 1:
            num_shards = int(v)  # type: ignore[arg-type]
        elif field == 2 and v != 0:
            raise CheckpointError(f"{index_path}: big-endian checkpoints are not supported")
    shards: dict[int, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, value in sorted(entries.items()):
        if any(s in name for s in skip):
            continue
        entry = _parse_entry(value)
        if entry["slices"]:
            raise CheckpointError(f"{index_path}: variable {name!r} is partitioned (sliced); "
                                  "not supported")
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{index_path}: variable {name!r} has unsupported TF dtype "
                                  f"{entry['dtype']}")
        shard = entry["shard_id"]
        if shard not in shards:
            data_path = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
            if not data_path.is_file():
                raise CheckpointError(f"{data_path}: checkpoint data shard not found")
            shards[shard] = np.memmap(data_path, dtype=np.uint8, mode="r")
        raw = shards[shard][entry["offset"]:entry["offset"] + entry["size"]]
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        if raw.size != count * np.dtype(dtype).itemsize:
            raise CheckpointError(f"{index_path}: variable {name!r}: {raw.size} bytes stored for "
                                  f"shape {entry['shape']} of {np.dtype(dtype).name}; corrupt file")
        out[name] = np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")) \
            .astype(dtype).reshape(entry["shape"])
    return out
