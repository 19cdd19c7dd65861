"""Reading a checkpoint file's bytes and its containers, with limits tied to the file size.

- ``read_checkpoint_bytes``: only regular files (FIFOs, devices, directories, symlink loops get their
  own message), at most ``MAX_CHECKPOINT_BYTES``; the file is mapped (copy-on-write), not read, so
  only the bytes the checks reach are ever touched (a sparse multi-GiB file costs nothing).
- ``read_torch_zip``: a ``torch.save`` zip archive parsed here, not by ``torch.load``: the end of
  central directory record (zip64 too) is read first and the directory's size and entry count are
  checked (``MAX_CENTRAL_DIRECTORY_BYTES``, ``MAX_ZIP_MEMBERS``) before ``zipfile`` parses it; every member
  stored uncompressed (``torch.save`` never compresses, so no zip bomb), its CRC-32 checked, its
  data inside the file; ``data.pkl`` is read by the safe unpickler and each storage is a view of the
  member's bytes whose size must equal the declared element count x element size.
- ``read_plain_pickle``: a network pickle through the same safe unpickler.

Every problem is a ``CheckpointError`` naming the file; ``loading_errors`` turns the failures a
resource limit can cause (``MemoryError``, ``OSError``, torch's allocator ``RuntimeError``) into one.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointError, describe
from .safe_pickle import Budget, ByteReader, Storage, StorageType, load_pickle, short_repr, storage_from_bytes

MAX_CHECKPOINT_BYTES = 8 << 30
"""Largest checkpoint read (the BRGM authors' FFHQ pickle is about 364 MB). This and the other
upper-case limits of ``checkpoint_files`` / ``safe_pickle`` / ``nvidia_pickle`` / ``metadata`` are
read when a file is loaded: set them on the module to change them for the process."""
MAX_ZIP_MEMBERS = 100_000
MAX_CENTRAL_DIRECTORY_BYTES = 32 << 20
"""A zip's central directory (torch.save writes about 100 bytes per member)."""
TENSOR_SLACK_BYTES = 16 << 20


def tensor_budget(source: Any, file_size: int) -> Budget:
    """Tensor views may declare at most twice the file size (+16 MiB) in all, and the storages made
    from the file's bytes at most the file size (+16 MiB): a real checkpoint's bytes are in the file."""
    return Budget(source, max_tensor_bytes=2 * file_size + TENSOR_SLACK_BYTES,
                  max_storage_bytes=file_size + TENSOR_SLACK_BYTES)


def state_bytes_limit(file_size: int) -> int:
    """Most bytes the state entries of a network from a file of ``file_size`` bytes may hold in all
    (every entry charged at float32, an entry aliasing another charged again): the network built
    from them is no larger than this."""
    return 2 * file_size + TENSOR_SLACK_BYTES


@contextmanager
def loading_errors(source: Any, file_size: int | None = None) -> Iterator[None]:
    """Turn failures that hostile input or a resource limit can cause while loading ``source`` into a
    ``CheckpointError`` naming the file and the limits (``CheckpointError`` itself passes through)."""
    name = describe(source)
    limits = ("" if file_size is None else
              f"; for this {file_size}-byte file the tensors may declare {2 * file_size + TENSOR_SLACK_BYTES} "
              f"bytes and the network hold {state_bytes_limit(file_size)} bytes")
    try:
        yield
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{name}: ran out of memory while loading it{limits}") from None
    except RecursionError:
        raise CheckpointError(f"{name}: nests too deeply to be read") from None
    except RuntimeError as err:
        text = " ".join(str(err).split())
        if "alloc" in text.lower() or "memory" in text.lower():
            raise CheckpointError(f"{name}: ran out of memory while loading it{limits} ({text[:200]})") from None
        raise CheckpointError(f"{name}: cannot be loaded ({type(err).__name__}: {text[:200]})") from None
    except OSError as err:
        raise CheckpointError(f"{name} cannot be read: {err.strerror or type(err).__name__}") from None
    except Exception as err:  # a reader bug on odd input: still one clean error for the user, marked as a bug
        text = " ".join(str(err).split())
        raise CheckpointError(f"{name}: cannot be loaded ({type(err).__name__}: {text[:200]}); {READER_BUG}") from err


READER_BUG = "this is a bug in brgm-pyro's checkpoint reader, please report it"
"""Marks a ``CheckpointError`` made from an unexpected exception (the fuzzer fails on it)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the given path (also a ``FileNotFoundError``)."""


def read_checkpoint_bytes(path: Path, max_bytes: int | None = None) -> mmap.mmap | bytearray:
    """The content of the regular file ``path``, mapped copy-on-write (nothing is read up front; read
    into memory only on a file system that cannot map it), with a clear error for anything else. Its
    size is checked against ``max_bytes`` before it is mapped.

    Caveat of mapping: if another process truncates the file while it is being loaded, reading the
    missing pages ends the process with SIGBUS (the file is never written by brgm-pyro).
    """
    name = describe(path)
    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointNotFoundError(f"{name} is a symbolic link to a file that does not exist") from None
        raise CheckpointNotFoundError(f"no file at {str(path)!r}") from None
    except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte in the path
        if getattr(err, "errno", None) == errno.ELOOP:
            raise CheckpointError(f"{name} is a symbolic link loop") from None
        raise CheckpointError(f"{name} cannot be accessed: {getattr(err, 'strerror', None) or err}") from None
    _check_regular(info, name, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise CheckpointError(f"{name} cannot be opened: {err.strerror}") from None
    try:
        info = os.fstat(fd)  # the file actually opened (it may have been swapped since the stat)
        _check_regular(info, name, max_bytes)
        try:
            return mmap.mmap(fd, info.st_size, access=mmap.ACCESS_COPY)
        except OSError as err:
            if err.errno not in (errno.ENODEV, errno.EINVAL, errno.EACCES, errno.EOPNOTSUPP):
                raise CheckpointError(f"{name} ({info.st_size} bytes) cannot be mapped into memory: "
                                      f"{err.strerror} (an address-space limit?)") from None
        except (ValueError, MemoryError, OverflowError) as err:
            raise CheckpointError(f"{name} ({info.st_size} bytes) cannot be mapped into memory: {err} "
                                  "(an address-space limit?)") from None
        return _read_whole(fd, info.st_size, name)  # a file system without mmap support
    finally:
        os.close(fd)  # a mapping stays valid


def _read_whole(fd: int, size: int, name: str) -> bytearray:
    """The ``size`` bytes of the open file ``fd``, read into memory (the fallback when it cannot be mapped)."""
    try:
        data = bytearray(size)
    except MemoryError:
        raise CheckpointError(f"{name}: not enough memory to read its {size} bytes") from None
    view = memoryview(data)
    done = 0
    while done < size:
        n = os.readv(fd, [view[done:]])
        if not n:
            raise CheckpointError(f"{name} shrank while being read ({done} of {size} bytes)")
        done += n
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


_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")


def _end_record(data: Any) -> tuple[int, int, int] | None:
    """(position of the end record, central directory size, its offset) as ``zipfile`` finds them.

    Same search as ``zipfile._EndRecData``: an end record without comment in the last 22 bytes,
    else the last signature in the final 64 KiB + 22 bytes; a zip64 locator just before it replaces
    the sizes by the zip64 record's (which ``zipfile`` reads just before the locator).
    """
    size = len(data)
    if size >= _EOCD.size and data[size - 22:size - 18] == b"PK\x05\x06" and data[size - 2:size] == b"\0\0":
        pos = size - _EOCD.size
    else:
        low = max(size - (1 << 16) - _EOCD.size, 0)
        found = bytes(data[low:size]).rfind(b"PK\x05\x06")
        if found < 0 or low + found + _EOCD.size > size:
            return None
        pos = low + found
    _, _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(data, pos)
    location = pos
    if pos >= _EOCD64_LOCATOR.size:
        sig, _, _, _ = _EOCD64_LOCATOR.unpack_from(data, pos - _EOCD64_LOCATOR.size)
        record = pos - _EOCD64_LOCATOR.size - _EOCD64.size
        if sig == b"PK\x06\x07" and record >= 0:
            fields = _EOCD64.unpack_from(data, record)
            if fields[0] == b"PK\x06\x06":
                cd_size, cd_offset = fields[8], fields[9]
                location = record
    return location, cd_size, cd_offset


def check_central_directory(data: Any, name: str, max_members: int | None = None,
                            max_bytes: int | None = None) -> int:
    """Number of central-directory entries, counted the way ``zipfile`` walks them, before it does.

    Refuses a directory larger than ``max_bytes`` or outside the file, and more than
    ``max_members`` entries (work: at most ``max_members`` + 1 fixed-size steps). Structural errors
    are left to ``zipfile`` (it reports them with the same records).
    """
    max_members = MAX_ZIP_MEMBERS if max_members is None else max_members
    max_bytes = MAX_CENTRAL_DIRECTORY_BYTES if max_bytes is None else max_bytes
    found = _end_record(data)
    if found is None:
        return 0
    location, cd_size, cd_offset = found
    if cd_size > max_bytes:
        raise CheckpointError(f"{name}: zip central directory of {cd_size} bytes, more than the {max_bytes}-byte "
                              "limit (a torch.save file needs about 100 bytes per member)")
    start = location - cd_size  # where zipfile reads it from ("concat" handling)
    if start < 0 or start + cd_size > len(data):
        raise CheckpointError(f"{name} is a truncated or corrupt zip archive (its central directory lies "
                              "outside the file)")
    count, pos, end = 0, start, start + cd_size
    while pos < end:
        if pos + _CENTRAL_ENTRY.size > len(data):
            break
        fields = _CENTRAL_ENTRY.unpack_from(data, pos)
        count += 1
        if count > max_members:
            raise CheckpointError(f"{name}: zip archive with more than {max_members} members (limit {max_members})")
        pos += _CENTRAL_ENTRY.size + fields[12] + fields[13] + fields[14]
    return count


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
    check_central_directory(data, name)
    try:
        archive = zipfile.ZipFile(ByteReader(data))
        members = archive.infolist()
    except MemoryError:
        raise
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
