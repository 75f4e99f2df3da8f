"""Reading and writing ``safetensors`` checkpoints one tensor at a time.

Reading goes through ``safetensors.safe_open`` (memory-mapped), one tensor per open, so no
mapping outlives the tensor it served; :meth:`SourceCheckpoint.map` keeps a tensor mapped instead
(an embedding table of which a few rows are read), the mapping closed with the last view of it.
Writing follows the safetensors format (an 8-byte little-endian header length, a JSON header
of dtype, shape and byte offsets per tensor, padded with spaces to a multiple of 8, then the raw little-endian bytes in offset order): the header is
known before any data, since every output shape follows from the plan, so each tensor is read,
sliced, written and dropped in turn, and no shard is ever held in memory; a tensor the plan
leaves whole is copied byte for byte in chunks, never loaded.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs
import numpy as np
import torch

from prune_ops import PruningError

__all__ = ["Shard", "SourceCheckpoint", "write_shard"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

_DTYPES: Mapping[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_NAME = {name: dtype for dtype, name in _DTYPES.items()}


@attrs.frozen
class Shard:
    """One file of a checkpoint and the tensor names it holds, in file order."""

    name: str
    keys: tuple[str, ...]


class SourceCheckpoint:
    """The safetensors shards of a ``save_pretrained`` folder: names, shapes, dtypes, one tensor at a time."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        self.directory = Path(directory)
        self._open = safe_open
        index = self.directory / INDEX
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            names = list(dict.fromkeys(weight_map.values()))
        elif (self.directory / SINGLE).is_file():
            names = [SINGLE]
        else:
            raise PruningError(
                f"{self.directory}: no {INDEX} or {SINGLE}; prune_checkpoint reads safetensors checkpoints "
                "(save_pretrained(..., safe_serialization=True))"
            )
        self.shards: list[Shard] = []
        self.files: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.spans: dict[str, tuple[int, int]] = {}  # absolute byte range of each tensor in its file
        for name in names:
            path = self.directory / name
            if not path.is_file():
                raise PruningError(f"{path}: listed in {INDEX} but missing")
            header, start = _header(path)
            keys = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
            for key in keys:
                dtype = _FROM_NAME.get(header[key]["dtype"])
                if dtype is None:
                    raise PruningError(f"{path}: tensor {key} has dtype {header[key]['dtype']}, not supported here")
                self.files[key] = name
                self.shapes[key] = tuple(header[key]["shape"])
                self.dtypes[key] = dtype
                begin, end = header[key]["data_offsets"]  # type: ignore[misc]
                self.spans[key] = (start + int(begin), start + int(end))
            self.shards.append(Shard(name, tuple(keys)))

    def read(self, key: str) -> torch.Tensor:
        """The tensor ``key`` (a copy in memory; the file mapping is closed again)."""
        with self._open(str(self.directory / self.files[key]), framework="pt", device="cpu") as handle:
            return handle.get_tensor(key)  # type: ignore[no-any-return]

    def map(self, key: str) -> torch.Tensor:
        """The tensor ``key`` memory-mapped from its shard (copy-on-write): only the pages read become resident.

        Falls back to :meth:`read` for a tensor whose bytes are not aligned to its element size.
        """
        begin, end = self.spans[key]
        dtype, shape = self.dtypes[key], self.shapes[key]
        if end == begin or begin % _itemsize(dtype) or sys.byteorder != "little":
            return self.read(key)
        raw = np.memmap(self.directory / self.files[key], dtype=np.uint8, mode="c", offset=begin, shape=(end - begin,))
        return torch.from_numpy(raw).view(dtype).reshape(shape)

    def copy_bytes(self, key: str, out: BinaryIO, chunk: int = 16 * 2**20) -> None:
        """Copy the stored bytes of ``key`` to ``out`` in chunks: a tensor kept whole never sits in memory."""
        begin, end = self.spans[key]
        with open(self.directory / self.files[key], "rb") as f:
            f.seek(begin)
            left = end - begin
            while left:
                data = f.read(min(chunk, left))
                if not data:
                    raise PruningError(f"{self.files[key]}: truncated inside tensor {key}")
                out.write(data)
                left -= len(data)

    @property
    def total_bytes(self) -> int:
        """Bytes of tensor data in all shards."""
        return sum(math.prod(s) * _itemsize(self.dtypes[k]) for k, s in self.shapes.items())


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _header(path: Path) -> tuple[dict[str, dict[str, object]], int]:
    """The JSON header and the offset where tensor data starts."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise PruningError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100_000_000:
            raise PruningError(f"{path}: not a safetensors file (header of {length} bytes)")
        header: dict[str, dict[str, object]] = json.loads(f.read(length))
    return header, 8 + length


def write_shard(
    path: Path,
    entries: Sequence[tuple[str, tuple[int, ...], torch.dtype]],
    produce: Callable[[str, BinaryIO], torch.Tensor | None],
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write ``entries`` (name, shape, dtype) to ``path``, calling ``produce(name, file)`` for each in turn.

    Returns the bytes of tensor data written. ``produce`` returns the tensor, which must have the
    announced shape and dtype and is written and dropped before the next one, or writes the
    tensor's bytes to ``file`` itself and returns ``None`` (a tensor copied unchanged).
    """
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, shape, dtype in entries:
        size = math.prod(shape) * _itemsize(dtype)
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape, dtype in entries:
            position = f.tell()
            tensor = produce(name, f)
            if tensor is None:
                size = math.prod(shape) * _itemsize(dtype)
                if f.tell() - position != size:
                    raise PruningError(f"writing {path.name}: {name} took {f.tell() - position} bytes, not {size}")
                continue
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise PruningError(
                    f"writing {path.name}: {name} came out {tuple(tensor.shape)} {tensor.dtype}, "
                    f"announced {tuple(shape)} {dtype}"
                )
            for chunk in _bytes(tensor):
                f.write(chunk)
    return offset


def _bytes(tensor: torch.Tensor) -> Iterator[memoryview]:
    """The tensor's little-endian bytes, in row-major order, in chunks of at most 64 MB."""
    if sys.byteorder != "little":  # pragma: no cover - safetensors stores little-endian bytes
        raise PruningError("writing safetensors on a big-endian machine is not supported")
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return
    raw = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
    step = 64 * 1024 * 1024
    for start in range(0, raw.numel(), step):
        yield memoryview(raw[start : start + step].numpy())
