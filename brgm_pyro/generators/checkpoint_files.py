"""Reading a checkpoint file's bytes and its containers, with limits tied to the file size.

- ``read_checkpoint_bytes``: only regular files (FIFOs, devices, directories, symlink loops get their
  own message), at most ``MAX_CHECKPOINT_BYTES``; the file is read once into memory.
- ``read_torch_zip``: a ``torch.save`` zip archive parsed here, not by ``torch.load``: every member
  stored uncompressed (``torch.save`` never compresses, so no zip bomb), its CRC-32 checked, its
  data inside the file; ``data.pkl`` is read by the safe unpickler and each storage is a view of the
  member's bytes whose size must equal the declared element count x element size.
- ``read_plain_pickle``: a network pickle through the same safe unpickler.

Every problem is a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointError, describe
from .safe_pickle import Budget, ByteReader, Storage, StorageType, load_pickle, short_repr, storage_from_bytes

MAX_CHECKPOINT_BYTES = 8 << 30
"""Largest checkpoint read (the BRGM authors' FFHQ pickle is about 364 MB)."""
MAX_ZIP_MEMBERS = 100_000
TENSOR_SLACK_BYTES = 16 << 20


def tensor_budget(source: Any, file_size: int) -> Budget:
    """Tensors may declare at most twice the file size (+16 MiB): their bytes must be in the file."""
    return Budget(source, max_tensor_bytes=2 * file_size + TENSOR_SLACK_BYTES)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the given path (also a ``FileNotFoundError``)."""


def read_checkpoint_bytes(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> bytearray:
    """The whole content of the regular file ``path``, with a clear error for anything else."""
    name = describe(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointNotFoundError(f"{name} is a symbolic link to a file that does not exist") from None
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CheckpointError(f"{name} is a symbolic link loop") from None
        raise CheckpointError(f"{name} cannot be accessed: {err.strerror}") from None
    _check_regular(info, name, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise CheckpointError(f"{name} cannot be opened: {err.strerror}") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        info = os.fstat(f.fileno())  # the file actually opened (it may have been swapped since the stat)
        _check_regular(info, name, max_bytes)
        data = bytearray(info.st_size)
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = f.readinto(view[done:])
            if not n:
                break
            done += n
        if done != len(data):
            raise CheckpointError(f"{name} shrank while being read ({done} of {len(data)} bytes)")
    return data


def _check_regular(info: os.stat_result, name: str, max_bytes: int) -> None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{name} is a directory; pass the checkpoint file inside it")
    if stat.S_ISFIFO(mode):
        raise CheckpointError(f"{name} is a named pipe (FIFO), not a checkpoint file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise CheckpointError(f"{name} is a device file (like /dev/zero), not a checkpoint file")
    if stat.S_ISSOCK(mode):
        raise CheckpointError(f"{name} is a socket, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{name} is not a regular file")
    if info.st_size == 0:
        raise CheckpointError(f"{name} is empty")
    if info.st_size > max_bytes:
        raise CheckpointError(f"{name} is {info.st_size} bytes, more than the {max_bytes}-byte limit for checkpoints")


def sniff(data: bytes | bytearray) -> str:
    """``"zip"``, ``"pickle"`` or ``"unknown"`` from the first bytes."""
    if data[:4] == b"PK\x03\x04":
        return "zip"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "pickle"
    return "unknown"


def read_plain_pickle(data: bytes | bytearray, source: Any) -> Any:
    """A plain (network) pickle through the safe unpickler; no persistent ids allowed."""
    return load_pickle(ByteReader(data), tensor_budget(source, len(data)))


def _member_data_offset(data: bytearray, info: zipfile.ZipInfo, name: str) -> int:
    """Offset of a stored member's bytes, from its local header (checked against the directory)."""
    h = info.header_offset
    if h < 0 or h + 30 > len(data) or data[h:h + 4] != b"PK\x03\x04":
        raise CheckpointError(f"{name}: truncated or corrupt zip archive (bad local header for "
                              f"{short_repr(info.filename)})")
    name_len, extra_len = struct.unpack("<HH", data[h + 26:h + 30])
    if bytes(data[h + 30:h + 30 + name_len]) != info.orig_filename.encode("utf-8", "surrogateescape") \
            and bytes(data[h + 30:h + 30 + name_len]).decode("cp437", "replace") != info.orig_filename:
        raise CheckpointError(f"{name}: zip member {short_repr(info.filename)} has a local header for another name")
    start = h + 30 + name_len + extra_len
    if start + info.compress_size > len(data):
        raise CheckpointError(f"{name}: truncated zip archive: member {short_repr(info.filename)} runs past the end")
    return start


def read_torch_zip(data: bytearray, source: Any) -> Any:
    """Read a ``torch.save`` zip archive safely (see module docstring)."""
    name = describe(source)
    try:
        archive = zipfile.ZipFile(ByteReader(data))
        members = archive.infolist()
    except Exception as err:  # BadZipFile, unsupported zip versions, bad names, ... in the container itself
        raise CheckpointError(f"{name} is a truncated or corrupt zip archive ({type(err).__name__}: "
                              f"{short_repr(str(err), 120)[1:-1]})") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"{name}: zip archive with {len(members)} members (limit {MAX_ZIP_MEMBERS})")
    offsets: dict[str, tuple[int, int]] = {}
    total = 0
    for info in members:
        label = short_repr(info.filename)
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{name}: zip member {label} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(
                f"{name}: zip member {label} is compressed (declared {info.file_size} bytes from "
                f"{info.compress_size}); torch.save never compresses, so this file is refused (zip bomb guard)")
        total += info.file_size
        if total > len(data):
            raise CheckpointError(f"{name}: zip members declare more bytes ({total}) than the file holds ({len(data)})")
        start = _member_data_offset(data, info, name)
        if zlib.crc32(memoryview(data)[start:start + info.file_size]) != info.CRC:
            raise CheckpointError(f"{name}: zip member {label} fails its CRC-32 check: the file is corrupt")
        if info.filename in offsets:
            raise CheckpointError(f"{name}: zip member {label} appears twice")
        offsets[info.filename] = (start, info.file_size)
    pickles = [n for n in offsets if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
        raise CheckpointError(f"{name} is a zip archive but not a torch.save file (no single <archive>/data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    order = offsets.get(prefix + "byteorder")
    if order is not None and bytes(data[order[0]:order[0] + order[1]]) != b"little":
        raise CheckpointError(f"{name} was written on a big-endian machine; not supported")
    budget = tensor_budget(source, len(data))
    storages: dict[str, Storage] = {}

    def persistent_load(pid: Any) -> Storage:
        if type(pid) is not tuple or len(pid) != 5 or type(pid[0]) is not str or pid[0] != "storage" \
                or not isinstance(pid[1], StorageType) or type(pid[2]) is not str or type(pid[4]) is not int:
            budget.fail(f"unsupported persistent id {short_repr(pid)} in data.pkl")
        key, numel, dtype = pid[2], pid[4], pid[1].dtype
        if key in storages:
            if storages[key].data.dtype != dtype or storages[key].numel != numel:
                budget.fail(f"storage {key!r} is declared twice with different types or sizes")
            return storages[key]
        member = offsets.get(f"{prefix}data/{key}") if re.fullmatch(r"\w{1,64}", key) else None
        if member is None:
            budget.fail(f"storage {short_repr(key)} has no data/{short_repr(key)[1:-1]} member")
        itemsize = _itemsize(dtype)
        if numel < 0 or numel * itemsize != member[1]:
            budget.fail(f"storage {key!r} declares {short_repr(numel)} {dtype} elements "
                        f"but its member holds {member[1]} bytes")
        storages[key] = storage_from_bytes(data, member[0], numel, dtype, budget)
        return storages[key]

    start, size = offsets[pickles[0]]
    return load_pickle(ByteReader(memoryview(data)[start:start + size]), budget, persistent_load)


def _itemsize(dtype: Any) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()
