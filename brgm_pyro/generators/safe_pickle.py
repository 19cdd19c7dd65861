"""A pickle reader that is safe by construction, shared by every checkpoint format.

Nothing from the file is ever imported or called. The reader is Python's pure-Python unpickler
with its dangerous opcodes replaced:

- ``GLOBAL`` / ``STACK_GLOBAL`` resolve only the names of ``ALLOWED_GLOBALS``. Each maps to an
  inert stand-in written here (a record class, a marker, or a *constructor token* whose function
  validates its arguments); no name maps to the real torch / numpy / dnnlib object it is named after,
  except the ``torch.float32``-style dtype singletons.
- ``REDUCE`` calls only constructor tokens; ``NEWOBJ`` builds only ``EasyDict`` / ``Namespace``
  records with no arguments; ``BUILD`` applies state only to the records that validate it.
- ``APPEND(S)`` / ``SETITEM(S)`` / ``ADDITEMS`` act only on real lists, dicts and sets; dict keys and
  set items must be strings, bytes, ``None``, bools, ints in [-2**31, 2**31) or flat tuples of those
  (so hashing a key is linear in its size), and no container may hold more than
  ``MAX_SAME_HASH`` keys with one hash value (``KeyHashes``): crafted hash collisions cannot make
  building a dict or set quadratic.
- Every int in the stream has at most ``MAX_INT_BITS`` bits and every memo index lies in
  [0, 2**32) (checked by the opcode walk, before anything is built): no arithmetic on huge ints.
- ``INST``, ``OBJ``, ``EXT1/2/4``, ``PERSID`` and the protocol-5 buffer opcodes are refused.
- Before anything is built, ``_prescan`` walks the opcode stream (``pickletools``' opcode table,
  skipping over arguments without copying them): truncation, unknown opcodes, huge ints, too much
  text and streams longer than ``MAX_PICKLE_OPS`` opcodes are refused while nothing is allocated.

Tensors are rebuilt by ``_rebuild_tensor`` from a storage whose bytes are in the file, after
checking dtype, offset, shape and strides against that storage, and counting the declared bytes
against a ``Budget`` derived from the file size: every tensor view (``max_tensor_bytes``) and every
storage made (``max_storage_bytes``; a nested blob rebuilt twice is charged twice). numpy values
(``weight_gain`` scalars, stylegan3's small int arrays) are rebuilt from their raw bytes with plain
numeric dtypes only; numpy's own reconstructors are never called on file data.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import re
import struct
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .checkpoints import CheckpointError, UnsafeCheckpointError, describe

MAX_PICKLE_OPS = 2_000_000
"""Opcodes read from one file (every opcode builds at most one small object)."""
MAX_TENSOR_DIMS = 8
MAX_KEY_TUPLE = 64
MAX_INT_BITS = 256
"""Largest int (in bits, sign excluded) in a pickle; torch.save's magic number needs 77."""
KEY_INT_LIMIT = 2**31
"""Int dict keys / set items lie in [-KEY_INT_LIMIT, KEY_INT_LIMIT): their hashes are all distinct."""
MAX_SAME_HASH = 8
"""Most keys with one hash value in one dict or set (a real checkpoint has 1)."""
SMALL_CONTAINER = 8
"""Containers up to this size are not tracked: collisions among them cost at most 8 x 8 comparisons."""
MAX_MEMO_INDEX = 2**32
MAX_TEXT_BYTES = 64 << 20
"""Encoded bytes of all strings in one pickle (their str objects take at most 4x that: 256 MiB)."""
_TEXT_OPCODES = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
                 "SHORT_BINSTRING"}
FORBIDDEN_OPCODES = {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "BYTEARRAY8", "NEXT_BUFFER",
                     "READONLY_BUFFER"}


def short_repr(value: Any, limit: int = 60) -> str:
    """A bounded description of a value from a file (never recurses into containers)."""
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "<huge int>"
        return text if len(text) <= limit else text[:limit] + "..."
    return f"<{type(value).__name__}>"


def describe_keys(value: Any, limit: int = 10) -> str:
    """The first keys of a dict read from a file (any key types), or the value's type."""
    if not isinstance(value, dict):
        return type(value).__name__
    keys = sorted(short_repr(k, 40) for k in list(value)[:1000])
    return "[" + ", ".join(keys[:limit]) + (", ..." if len(value) > limit else "") + "]"


class Budget:
    """Limits for everything read from one checkpoint file."""

    def __init__(self, source: Any, max_tensor_bytes: int, max_ops: int | None = None,
                 max_storage_bytes: int | None = None) -> None:
        self.source = source
        self.max_tensor_bytes = max_tensor_bytes
        self.max_storage_bytes = max_tensor_bytes if max_storage_bytes is None else max_storage_bytes
        self.max_ops = MAX_PICKLE_OPS if max_ops is None else max_ops
        self.tensor_bytes = 0
        self.storage_bytes = 0
        self.ops = 0
        self.in_blob = False
        self.keys = KeyHashes(self)

    def fail(self, message: str, unsafe: bool = False) -> None:
        cls = UnsafeCheckpointError if unsafe else CheckpointError
        raise cls(f"{describe(self.source)}: {message}")

    def count_ops(self, n: int) -> None:
        self.ops += n
        if self.ops > self.max_ops:
            self.fail(f"the pickle has more than {self.max_ops} opcodes; no real checkpoint needs that many")

    def add_tensor(self, nbytes: int) -> None:
        self.tensor_bytes += nbytes
        if self.tensor_bytes > self.max_tensor_bytes:
            self.fail(f"its tensors declare {self.tensor_bytes} bytes in all, more than the {self.max_tensor_bytes} "
                      "bytes allowed for a file of this size (a real checkpoint's tensors are stored in the file)")

    def add_storage(self, nbytes: int) -> None:
        """Charge one storage made from the file's bytes (each nested-blob rebuild is a new storage)."""
        self.storage_bytes += nbytes
        if self.storage_bytes > self.max_storage_bytes:
            self.fail(f"its storages take {self.storage_bytes} bytes in all, more than the {self.max_storage_bytes} "
                      "bytes allowed for a file of this size (is one stored blob rebuilt many times?)")


class KeyHashes:
    """Counts the hash values of the keys in every dict / set the unpickler fills (``MAX_SAME_HASH``).

    Containers are tracked once they exceed ``SMALL_CONTAINER`` keys. The counts are dicts keyed by
    the (64-bit) hash values themselves, whose own hashes collide only for values equal modulo
    2**61 - 1 (at most 9 of them), so the counting is linear too.
    """

    def __init__(self, budget: "Budget") -> None:
        self.budget = budget
        self.tracked: dict[int, tuple[Any, dict[int, int]]] = {}

    def admit(self, container: Any, keys: list | tuple) -> None:
        """Check ``keys`` (types, sizes, hash collisions) before they go into ``container``."""
        for key in keys:
            check_key(key, self.budget)
        entry = self.tracked.get(id(container))
        if entry is None:
            if len(container) + len(keys) <= SMALL_CONTAINER:
                return
            entry = (container, {})  # the reference keeps id(container) from being reused
            self.tracked[id(container)] = entry
            self._count(entry[1], list(container))
        self._count(entry[1], keys)

    def distinct(self, keys: list | tuple) -> None:
        """Check the items of a set built in one go (``FROZENSET``, ``set(list)``)."""
        for key in keys:
            check_key(key, self.budget)
        if len(keys) > SMALL_CONTAINER:
            self._count({}, keys)

    def _count(self, counts: dict[int, int], keys: Any) -> None:
        for key in keys:
            h = hash(key)
            n = counts.get(h, 0) + 1
            if n > MAX_SAME_HASH:
                self.budget.fail(f"more than {MAX_SAME_HASH} keys of one dict or set share a hash value (or repeat); "
                                 "refused: crafted hash collisions make loading quadratic")
            counts[h] = n


class ByteReader:
    """A read-only file over a bytes-like object, without copying it (``io.BytesIO`` copies a bytearray)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).cast("B")
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n is None or n < 0 else min(len(self.view), self.pos + n)
        out = bytes(self.view[self.pos:end])
        self.pos = max(self.pos, end)
        return out

    def readline(self, limit: int = -1) -> bytes:
        end = len(self.view) if limit is None or limit < 0 else min(len(self.view), self.pos + limit)
        index = _find_newline(self.view[self.pos:end])
        return self.read(index + 1 if index >= 0 else end - self.pos)

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.view)}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def seekable(self) -> bool:
        return True


def _find_newline(view: memoryview) -> int:
    """Index of the first newline in ``view`` (-1: none); work linear in that index, not in ``len(view)``."""
    start, step = 0, 128
    while start < len(view):
        i = bytes(view[start:start + step]).find(b"\n")
        if i >= 0:
            return start + i
        start += step
        step = min(step * 2, 1 << 16)
    return -1


# ---------------------------------------------------------------- inert records


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict whose keys read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _pickle_build(self, state: Any, budget: Budget) -> None:
        if state is not None and not (type(state) is dict and not state):
            budget.fail("an EasyDict carries instance state; refused")


class Namespace(EasyDict):
    """Stand-in for ``argparse.Namespace`` (rosinality's ``args``): its attributes as a dict."""

    def _pickle_build(self, state: Any, budget: Budget) -> None:
        if type(state) is not dict:
            budget.fail(f"an argparse.Namespace state must be a dict, got {short_repr(state)}")
        for key in state:
            if type(key) is not str:
                budget.fail(f"an argparse.Namespace attribute name is {short_repr(key)}, not a string")
        self.update(state)


@dataclass
class PersistentObject:
    """Inert record of one stylegan2-ada persistent network object (its source code is text only)."""

    class_name: str
    version: int | None
    state: dict[str, Any]
    module_src: str = field(repr=False, default="")

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs")
        return dict(kwargs) if isinstance(kwargs, dict) else {}

    @property
    def init_args(self) -> tuple:
        args = self.state.get("_init_args")
        return tuple(args) if isinstance(args, (tuple, list)) else ()

    @property
    def children(self) -> dict[str, Any]:
        modules = self.state.get("_modules")
        return dict(modules) if isinstance(modules, dict) else {}


_PLAIN_NUMPY_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"}


class NumpyDType:
    """A validated numpy dtype description: plain numeric codes only (never object / void / record)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.byteorder = "="

    def _pickle_build(self, state: Any, budget: Budget) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if type(state) is not tuple or len(state) not in (8, 9):
            budget.fail(f"numpy dtype state {short_repr(state)} is not the 8-tuple of a plain dtype")
        if type(state[1]) is not str or state[1] not in ("<", ">", "|", "=") \
                or any(v is not None for v in state[2:5]) \
                or any(type(v) is not int for v in state[5:8]) or (len(state) == 9 and state[8] is not None):
            budget.fail("numpy dtype with sub-arrays, fields, metadata or an unknown byte order; refused")
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        order = "=" if self.byteorder == "|" else self.byteorder
        return np.dtype(order + self.code)


class NumpyArray:
    """A numpy array rebuilt from its raw bytes after checking shape x itemsize == byte count."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def _pickle_build(self, state: Any, budget: Budget) -> None:
        if type(state) is not tuple or len(state) != 5:
            budget.fail(f"numpy array state {short_repr(state)} is not (version, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, NumpyDType):
            budget.fail("numpy array without a plain numeric dtype (object arrays are refused)")
        if type(raw) is not bytes:
            budget.fail(f"numpy array data is {short_repr(raw)}, not raw bytes (object arrays are refused)")
        if type(shape) is not tuple or len(shape) > 32 or any(type(s) is not int or not 0 <= s < 2**40 for s in shape):
            budget.fail(f"numpy array shape {short_repr(shape)} is not a tuple of at most 32 ints in [0, 2**40)")
        dt = dtype.to_numpy()
        if math.prod(shape) * dt.itemsize != len(raw):
            budget.fail(f"numpy array of shape {shape} and dtype {dt} needs {math.prod(shape) * dt.itemsize} bytes, "
                        f"the file holds {len(raw)}")
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")


class _Marker:
    """A named, non-callable placeholder (``numpy.ndarray`` as an argument of ``_reconstruct``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


NDARRAY = _Marker("numpy.ndarray")


@dataclass(frozen=True)
class StorageType:
    """``torch.FloatStorage`` and friends: only the element dtype is used."""

    name: str
    dtype: torch.dtype


@dataclass
class Storage:
    """A typed storage whose bytes come from the file: ``data`` is a 1-D tensor of ``numel`` elements."""

    data: torch.Tensor

    @property
    def numel(self) -> int:
        return self.data.numel()


_STORAGE_TYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_TORCH_DTYPES = {name: getattr(torch, name) for name in dir(torch)
                 if isinstance(getattr(torch, name, None), torch.dtype)}


def storage_from_bytes(buffer: Any, offset: int, numel: int, dtype: torch.dtype,
                       budget: Budget, charged: bool = False) -> Storage:
    """A storage of ``numel`` ``dtype`` elements starting at ``buffer[offset]``, charged to the budget
    unless ``charged`` (the caller did)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    nbytes = numel * itemsize
    if offset < 0 or offset + nbytes > len(buffer):
        budget.fail(f"a storage of {short_repr(numel)} {dtype} elements does not fit "
                    f"in the {len(buffer) - offset} bytes left")
    if not charged:
        budget.add_storage(nbytes)
    if nbytes == 0:
        return Storage(torch.empty(0, dtype=dtype))
    raw = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes, offset=offset)
    if dtype == torch.bool and bool((raw > 1).any()):
        budget.fail("a bool storage holds bytes other than 0 and 1")
    if offset % itemsize:  # unaligned in the file: copy to aligned memory
        data = torch.empty(numel, dtype=dtype)
        data.view(torch.uint8).copy_(raw)
        return Storage(data)
    return Storage(raw.view(dtype))


# ---------------------------------------------------------------- constructors (validated calls)


class Constructor:
    """What ``find_class`` returns for a callable global: ``REDUCE`` runs ``fn(budget, *args)``."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    def __repr__(self) -> str:
        return f"<constructor {self.name}>"


def _ints(value: Any, what: str, budget: Budget, max_len: int | None = None) -> tuple[int, ...]:
    max_len = MAX_TENSOR_DIMS if max_len is None else max_len
    if type(value) not in (tuple, list) or len(value) > max_len \
            or any(type(v) is not int or not -2**62 < v < 2**62 for v in value):
        budget.fail(f"tensor {what} {short_repr(value)} is not a tuple of at most {max_len} ints")
    return tuple(value)


def _rebuild_tensor(budget: Budget, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    hooks: Any = None, metadata: Any = None, *extra: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` with every argument checked against the storage."""
    if extra:
        budget.fail("_rebuild_tensor_v2 with unexpected extra arguments")
    if not isinstance(storage, Storage):
        budget.fail(f"a tensor is built on {short_repr(storage)}, not on a storage from the file")
    if type(offset) is not int or not 0 <= offset < 2**62:
        budget.fail(f"tensor storage offset {short_repr(offset)} is not a non-negative int")
    size = _ints(size, "size", budget)
    stride = _ints(stride, "stride", budget)
    if len(size) != len(stride):
        budget.fail(f"tensor size {size} and stride {stride} have different lengths")
    if any(s < 0 for s in size) or any(s < 0 for s in stride):
        budget.fail(f"tensor size {size} / stride {stride} has negative entries")
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        budget.fail("a tensor carries backward hooks")
    numel = math.prod(size)
    budget.add_tensor(numel * storage.data.element_size())
    if numel == 0:
        if offset > storage.numel:
            budget.fail(f"tensor offset {offset} lies beyond its storage of {storage.numel} elements")
        return storage.data.new_empty(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.numel:
        budget.fail(f"tensor of size {size}, stride {stride}, offset {offset} reaches element {last} "
                    f"of a storage holding {storage.numel}")
    return storage.data.as_strided(size, stride, offset)


def _rebuild_parameter(budget: Budget, data: Any, requires_grad: Any = False, hooks: Any = None,
                       *extra: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter``: the tensor itself (we never train these)."""
    if extra or not isinstance(data, torch.Tensor):
        budget.fail(f"a parameter wraps {short_repr(data)}, not a tensor")
    return data


def _reconstruct_persistent(budget: Budget, meta: Any, *extra: Any) -> PersistentObject:
    """``torch_utils.persistence._reconstruct_persistent_obj``: an inert record; ``module_src`` is never run."""
    if extra or type(meta) is not dict:
        budget.fail("a persistent object record is not a single dict")
    if type(meta.get("type")) is not str or meta["type"] != "class":
        budget.fail(f"unsupported persistent object record of type {short_repr(meta.get('type'))}")
    name, state, src, version = meta.get("class_name"), meta.get("state"), meta.get("module_src"), meta.get("version")
    if type(name) is not str or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name):
        budget.fail(f"persistent object class name {short_repr(name)} is not an identifier")
    if type(state) is not dict:
        budget.fail(f"persistent object {name!r} has no state dict")
    if src is not None and type(src) is not str:
        budget.fail(f"persistent object {name!r} has a module_src that is not text")
    if version is not None and type(version) is not int:
        budget.fail(f"persistent object {name!r} has a non-integer version")
    return PersistentObject(class_name=name, version=version, state=state, module_src=src or "")


def _ordered_dict(budget: Budget, *args: Any) -> OrderedDict:
    if args:  # OrderedDict pickles as OrderedDict() followed by SETITEMS
        budget.fail("collections.OrderedDict called with arguments")
    return OrderedDict()


def _make_set(budget: Budget, items: Any = (), *extra: Any) -> set:
    """``builtins.set(list)``: how protocol-2/3 pickles store ``_non_persistent_buffers_set``."""
    if extra or type(items) not in (list, tuple):
        budget.fail("builtins.set called with something other than one list")
    budget.keys.distinct(items)
    return set(items)


def _make_dtype(budget: Budget, code: Any, align: Any = False, copy: Any = True, *extra: Any) -> NumpyDType:
    if extra or type(code) is not str or code not in _PLAIN_NUMPY_CODES:
        budget.fail(f"numpy dtype {short_repr(code)} is not a plain numeric dtype; refused")
    return NumpyDType(code)


def _reconstruct_array(budget: Budget, cls: Any, shape: Any = None, typecode: Any = None, *extra: Any) -> NumpyArray:
    if cls is not NDARRAY or extra:
        budget.fail(f"numpy _reconstruct of {short_repr(cls)}; only plain numpy.ndarray is allowed")
    return NumpyArray()


def _numpy_scalar(budget: Budget, dtype: Any, data: Any = None, *extra: Any) -> int | float | complex | bool:
    if extra or not isinstance(dtype, NumpyDType):
        budget.fail("numpy scalar without a plain numeric dtype (object scalars are refused)")
    dt = dtype.to_numpy()
    if type(data) is not bytes or len(data) != dt.itemsize:
        budget.fail(f"numpy {dt} scalar needs {dt.itemsize} bytes of data, got {short_repr(data)}")
    return np.frombuffer(data, dtype=dt)[0].item()


def _storage_from_legacy_bytes(budget: Budget, blob: Any, *extra: Any) -> Storage:
    """``torch.storage._load_from_bytes``: a legacy ``torch.save`` of one storage, parsed here.

    Layout: pickles of the magic number, protocol 1001, system info, the storage's persistent id
    ``('storage', type, key, location, numel, view)``, the list of keys; then per key an int64
    element count and the raw bytes.
    """
    if extra or type(blob) is not bytes:
        budget.fail("torch.storage._load_from_bytes called without one bytes argument")
    # Every call parses and copies the whole blob: charge all of it, each time, before any work (one
    # stored blob rebuilt many times through the memo would otherwise cost calls x blob size).
    budget.add_storage(len(blob))
    if budget.in_blob:
        budget.fail("a nested tensor blob holds another nested blob")
    budget.in_blob = True
    try:
        return _parse_legacy_blob(budget, blob)
    finally:
        budget.in_blob = False


class _PendingStorage:
    def __init__(self, key: str) -> None:
        self.key = key


def _parse_legacy_blob(budget: Budget, blob: bytes) -> Storage:
    stream = ByteReader(blob)
    pending: dict[str, tuple[torch.dtype, int]] = {}

    def persistent_load(pid: Any) -> Any:
        if type(pid) is not tuple or len(pid) != 6 or type(pid[0]) is not str or pid[0] != "storage" \
                or not isinstance(pid[1], StorageType) or type(pid[2]) is not str \
                or type(pid[4]) is not int or pid[4] < 0 or pid[5] is not None:
            budget.fail(f"unsupported storage record {short_repr(pid)} in a nested torch.save blob")
        pending[pid[2]] = (pid[1].dtype, pid[4])
        return _PendingStorage(pid[2])

    magic = load_pickle(stream, budget)
    if type(magic) is not int or magic != 0x1950A86A20F9469CFC6C:
        budget.fail("a nested tensor blob is not a torch.save stream (wrong magic number)")
    protocol = load_pickle(stream, budget)
    if type(protocol) is not int or protocol != 1001:
        budget.fail("a nested tensor blob has an unknown torch.save protocol version")
    info = load_pickle(stream, budget)
    if type(info) is not dict or info.get("little_endian") is not True:
        budget.fail("a nested tensor blob was written on a big-endian machine; not supported")
    root = load_pickle(stream, budget, persistent_load)
    keys = load_pickle(stream, budget)
    if not isinstance(root, _PendingStorage) or type(keys) is not list or len(keys) != 1 \
            or type(keys[0]) is not str or keys[0] != root.key:
        budget.fail("a nested tensor blob does not hold exactly one storage")
    dtype, numel = pending[root.key]
    head = stream.read(8)
    if len(head) != 8 or struct.unpack("<q", head)[0] != numel:
        budget.fail("a nested tensor blob's element count does not match its record (truncated?)")
    offset = stream.tell()
    itemsize = torch.empty((), dtype=dtype).element_size()
    if offset + numel * itemsize != len(blob):
        budget.fail(f"a nested tensor blob declares {numel} elements but holds {len(blob) - offset} bytes")
    return storage_from_bytes(bytearray(memoryview(blob)[offset:]), 0, numel, dtype, budget, charged=True)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): Constructor("_rebuild_tensor_v2", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): Constructor("_rebuild_parameter", _rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): Constructor("_load_from_bytes", _storage_from_legacy_bytes),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"):
        Constructor("_reconstruct_persistent_obj", _reconstruct_persistent),
    ("collections", "OrderedDict"): Constructor("OrderedDict", _ordered_dict),
    ("builtins", "set"): Constructor("set", _make_set),
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("argparse", "Namespace"): Namespace,
    ("numpy", "dtype"): Constructor("numpy.dtype", _make_dtype),
    ("numpy", "ndarray"): NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): Constructor("numpy._reconstruct", _reconstruct_array),
    ("numpy._core.multiarray", "_reconstruct"): Constructor("numpy._reconstruct", _reconstruct_array),
    ("numpy.core.multiarray", "scalar"): Constructor("numpy.scalar", _numpy_scalar),
    ("numpy._core.multiarray", "scalar"): Constructor("numpy.scalar", _numpy_scalar),
}
"""The complete allow-list (plus ``torch.<dtype>`` singletons and ``torch.<Type>Storage`` markers).

Why each is needed: tensors pickle through ``_rebuild_tensor_v2`` / ``_rebuild_parameter`` on
storages (``_load_from_bytes`` inside plain pickles, ``torch.<Type>Storage`` ids inside torch zips);
network objects through ``_reconstruct_persistent_obj``; module state holds ``OrderedDict``s and
(protocol <= 3) ``set()``; kwargs are ``EasyDict``s; rosinality's ``args`` is an ``argparse.Namespace``;
``weight_gain`` and friends are numpy float64 scalars (``scalar`` + ``dtype``) and stylegan3 layers
hold small numpy int arrays (``_reconstruct`` + ``ndarray`` + ``dtype``).
"""


def find_global(module: str, name: str, budget: Budget) -> Any:
    target = ALLOWED_GLOBALS.get((module, name))
    if target is not None:
        return target
    if module == "torch" and name in _TORCH_DTYPES:
        return _TORCH_DTYPES[name]
    if module == "torch" and name in _STORAGE_TYPES:
        return StorageType(name, _STORAGE_TYPES[name])
    hint = ""
    if module.startswith("dnnlib.tflib"):
        hint = (" This is a TensorFlow StyleGAN2 pickle: convert it first with NVIDIA's stylegan2-ada-pytorch "
                "`legacy.py` (or load it with their code) and save a PyTorch pickle.")
    budget.fail(f"the pickle asks for the global {short_repr(module, 100)[1:-1]}.{short_repr(name, 100)[1:-1]}, "
                f"which is not on brgm-pyro's allow-list; it was not imported or called.{hint}", unsafe=True)


_KEY_TYPES = (str, int, bool, type(None), bytes)


def _plain_key(key: Any) -> bool:
    kind = type(key)
    return kind in _KEY_TYPES and (kind is not int or -KEY_INT_LIMIT <= key < KEY_INT_LIMIT)


def check_key(key: Any, budget: Budget) -> None:
    """Dict keys / set items: strings, bytes, None, bools, ints in [-2**31, 2**31) or flat tuples of
    those (hashing stays linear; float keys, whose hashes are easy to collide, are refused)."""
    if _plain_key(key):
        return
    if type(key) is tuple and len(key) <= MAX_KEY_TUPLE and all(_plain_key(k) for k in key):
        return
    if type(key) is int:
        budget.fail(f"an int dict key or set item {short_repr(key)} lies outside [-2**31, 2**31)")
    budget.fail(f"a dict key or set item of type {type(key).__name__} is not allowed")


# ---------------------------------------------------------------- the unpickler


class _Unpickler(pickle._Unpickler):  # type: ignore[name-defined]
    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, budget: Budget, persistent: Callable[[Any], Any] | None) -> None:
        super().__init__(file)
        self.budget = budget
        self.persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        return find_global(module, name, self.budget)

    def persistent_load(self, pid: Any) -> Any:
        if self.persistent is None:
            self.budget.fail("the pickle uses persistent ids, which this format never does")
        return self.persistent(pid)

    def _refuse(self) -> None:
        self.budget.fail("the pickle uses an opcode brgm-pyro refuses (INST/OBJ/EXT/PERSID/buffers)", unsafe=True)

    def _reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, Constructor):
            self.budget.fail(f"the pickle calls {short_repr(func)}, which is not an allowed constructor", unsafe=True)
        if type(args) is not tuple:
            self.budget.fail(f"arguments of {func.name} are not a tuple")
        self.stack[-1] = func.fn(self.budget, *args)

    def _newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if (cls is not EasyDict and cls is not Namespace) or type(args) is not tuple or args:
            self.budget.fail(f"the pickle instantiates {short_repr(cls)}; only EasyDict / Namespace may be created "
                             "this way, without arguments", unsafe=True)
        self.append(cls())

    def _newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        if type(kwargs) is not dict or kwargs:
            self.budget.fail("NEWOBJ_EX with keyword arguments", unsafe=True)
        self._newobj()

    def _build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        build = getattr(type(inst), "_pickle_build", None)
        if build is None:
            self.budget.fail(f"the pickle sets the state of a {type(inst).__name__}; only numpy dtype/array, "
                             "EasyDict and Namespace records accept state", unsafe=True)
        build(inst, state, self.budget)

    def _target(self, kinds: tuple[type, ...], what: str) -> Any:
        target = self.stack[-1] if self.stack else None
        if type(target) not in kinds:
            self.budget.fail(f"the pickle {what} a {type(target).__name__}")
        return target

    def _append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "appends to").append(value)

    def _appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "appends to").extend(items)

    def _setitems_into(self, target: dict, items: list) -> None:
        if len(items) % 2:
            self.budget.fail("SETITEMS with an odd number of items")
        self.budget.keys.admit(target, items[0::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems_into(self._target((dict, OrderedDict, EasyDict, Namespace), "sets an item of"), [key, value])

    def _setitems(self) -> None:
        items = self.pop_mark()
        self._setitems_into(self._target((dict, OrderedDict, EasyDict, Namespace), "sets items of"), items)

    def _dict(self) -> None:
        items = self.pop_mark()
        d: dict = {}
        self._setitems_into(d, items)
        self.append(d)

    def _additems(self) -> None:
        items = self.pop_mark()
        target = self._target((set,), "adds set items to")
        self.budget.keys.admit(target, items)
        target.update(items)

    def _frozenset(self) -> None:
        items = self.pop_mark()
        self.budget.keys.distinct(items)
        self.append(frozenset(items))


_P = pickle
for _code, _method in [
    (_P.REDUCE, _Unpickler._reduce), (_P.NEWOBJ, _Unpickler._newobj), (_P.NEWOBJ_EX, _Unpickler._newobj_ex),
    (_P.BUILD, _Unpickler._build), (_P.APPEND, _Unpickler._append), (_P.APPENDS, _Unpickler._appends),
    (_P.SETITEM, _Unpickler._setitem), (_P.SETITEMS, _Unpickler._setitems), (_P.DICT, _Unpickler._dict),
    (_P.ADDITEMS, _Unpickler._additems), (_P.FROZENSET, _Unpickler._frozenset),
    (_P.INST, _Unpickler._refuse), (_P.OBJ, _Unpickler._refuse), (_P.EXT1, _Unpickler._refuse),
    (_P.EXT2, _Unpickler._refuse), (_P.EXT4, _Unpickler._refuse), (_P.PERSID, _Unpickler._refuse),
    (_P.BYTEARRAY8, _Unpickler._refuse), (_P.NEXT_BUFFER, _Unpickler._refuse),
    (_P.READONLY_BUFFER, _Unpickler._refuse),
]:
    _Unpickler.dispatch[_code[0]] = _method


_CODE2OP = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
_LENGTH_WIDTH = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}


def _max_int_text() -> int:
    """Longest text INT / LONG argument: the digits of a MAX_INT_BITS-bit int (78 for 256), sign, "L"."""
    return len(str(2**MAX_INT_BITS)) + 2


def _prescan(stream: ByteReader, budget: Budget, allow_persistent: bool) -> None:
    """Walk the opcodes without building or copying anything (each step O(1) but newline searches).

    Refuses truncation, unknown and refused opcodes, ints over ``MAX_INT_BITS`` bits (from the
    length prefix or digit count, before any decoding), memo indices outside [0, 2**32), more than
    ``MAX_TEXT_BYTES`` of strings and more than ``Budget.max_ops`` opcodes.
    """
    view, pos, end = stream.view, stream.pos, len(stream.view)
    n = text = 0
    max_int_text = _max_int_text()

    def truncated(what: str) -> None:
        budget.fail(f"the pickle ends early: the file is truncated ({what} at byte {pos})")

    while True:
        if pos >= end:
            truncated("no STOP opcode")
        op = _CODE2OP.get(view[pos])
        if op is None:
            budget.fail(f"not a valid pickle: unknown opcode {view[pos]:#04x} at byte {pos}")
        pos += 1
        n += 1
        if not n & 0xFFFF:
            budget.count_ops(0x10000)
        name = op.name
        if name in FORBIDDEN_OPCODES or (name == "BINPERSID" and not allow_persistent):
            budget.fail(f"the pickle uses the opcode {name}, which brgm-pyro refuses", unsafe=True)
        arg = op.arg
        if arg is None:
            if name == "STOP":
                break
            continue
        if arg.n >= 0:
            if pos + arg.n > end:
                truncated(f"argument of {name}")
            pos += arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if arg is pickletools.stringnl_noescape_pair else 1):
                j = _find_newline(view[pos:end])
                if j < 0:
                    truncated(f"text argument of {name}")
                line = bytes(view[pos:pos + j]) if j <= max_int_text else b""
                if name in ("INT", "LONG", "PUT", "GET") and (j > max_int_text or not line.strip()):
                    budget.fail(f"the pickle's {name} argument is not a number of at most {MAX_INT_BITS} bits")
                if name in _TEXT_OPCODES:
                    text += j
                pos += j + 1
            if name in ("PUT", "GET"):
                try:
                    index = int(line)
                except ValueError:
                    budget.fail(f"not a valid pickle: {name} argument {short_repr(line)}")
                if not 0 <= index < MAX_MEMO_INDEX:
                    budget.fail(f"the pickle's {name} index {index} lies outside [0, 2**32)")
        else:
            width, signed = _LENGTH_WIDTH[arg.n]
            if pos + width > end:
                truncated(f"length of {name}")
            length = int.from_bytes(view[pos:pos + width], "little", signed=signed)
            pos += width
            if length < 0:
                budget.fail(f"not a valid pickle: {name} with negative length {length}")
            if name in ("LONG1", "LONG4") and length * 8 > MAX_INT_BITS + 8:
                budget.fail(f"the pickle holds an int of {length} bytes; ints of more than {MAX_INT_BITS} bits are "
                            "refused (arithmetic on them is slow)")
            if length > end - pos:
                truncated(f"{name} of {length} bytes")
            if name in _TEXT_OPCODES:
                text += length
            pos += length
        if text > MAX_TEXT_BYTES:
            budget.fail(f"the pickle's strings take more than {MAX_TEXT_BYTES} bytes; no real checkpoint has that "
                        "much text")
    budget.count_ops(n & 0xFFFF)


def load_pickle(stream: ByteReader, budget: Budget, persistent: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle one pickle from ``stream`` with the safe reader (see module docstring)."""
    _prescan(stream, budget, persistent is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _Unpickler(stream, budget, persistent).load()
        except CheckpointError:
            raise
        except RecursionError:
            budget.fail("the pickle nests too deeply")
        except MemoryError:
            budget.fail(f"ran out of memory while unpickling (memory limits: tensors {budget.max_tensor_bytes} bytes, "
                        f"storages {budget.max_storage_bytes} bytes, {budget.max_ops} opcodes)")
        except EOFError:
            budget.fail("the pickle ends early: the file is truncated")
        except Exception as err:  # bad opcodes, stack underflow, missing memo entries, ...
            budget.fail(f"not a readable pickle (corrupt?): {type(err).__name__}: {short_repr(str(err), 120)[1:-1]}")
