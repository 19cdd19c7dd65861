"""A corpus of hostile checkpoint files, generated here, for ``test_hostile_checkpoints``.

Each builder writes one file (or FIFO / link / directory) into a folder and returns its path.
``CASES`` maps a case name to (builder, regex the ``CheckpointError`` message must match).
Some files are written opcode by opcode (``Asm``) because no honest pickler produces them.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from brgm_pyro.assets import pretrained_path
from brgm_pyro.generators import StyleGAN2Config, StyleGAN2Generator, save_generator

from .checkpoint_writers import (HOSTILE_MODULE_SRC, Persistent, _stand_in_modules, rosinality_state,
                                 write_network_pickle)


# ---------------------------------------------------------------- a tiny pickle assembler


class Asm:
    """Build a pickle opcode by opcode (protocol 2 opcodes unless noted)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def raw(self, b: bytes) -> "Asm":
        self.out += b
        return self

    def s(self, text: str) -> "Asm":
        b = text.encode()
        return self.raw(b"X" + struct.pack("<I", len(b)) + b)

    def b(self, data: bytes) -> "Asm":
        return self.raw(b"B" + struct.pack("<I", len(data)) + data)  # BINBYTES (protocol 3)

    def i(self, n: int) -> "Asm":
        return self.raw(b"J" + struct.pack("<i", n)) if -2**31 <= n < 2**31 else self.raw(
            b"\x8a" + bytes([len(n.to_bytes(16, "little", signed=True))]) + n.to_bytes(16, "little", signed=True))

    def g(self, module: str, name: str) -> "Asm":
        return self.raw(b"c" + f"{module}\n{name}\n".encode())

    def put(self, k: int) -> "Asm":
        return self.raw(b"r" + struct.pack("<I", k))

    def get(self, k: int) -> "Asm":
        return self.raw(b"j" + struct.pack("<I", k))

    def __getattr__(self, op: str) -> Callable[[], "Asm"]:
        codes = {"mark": b"(", "tuple": b"t", "tuple1": b"\x85", "tuple2": b"\x86", "tuple3": b"\x87",
                 "empty_tuple": b")", "empty_dict": b"}", "empty_list": b"]", "setitem": b"s", "setitems": b"u",
                 "reduce": b"R", "build": b"b", "none": b"N", "true": b"\x88", "false": b"\x89", "pop": b"0",
                 "stop": b".", "appends": b"e"}
        if op not in codes:
            raise AttributeError(op)
        return lambda: self.raw(codes[op])

    def bytes(self) -> bytes:
        return bytes(self.out + b".") if not self.out.endswith(b".") else bytes(self.out)


def g_ema_pickle(body: Callable[[Asm], Any]) -> bytes:
    """``{'G_ema': <what body pushes>}``."""
    a = Asm().empty_dict().s("G_ema")
    body(a)
    return a.setitem().bytes()


def numpy_dtype(a: Asm, code: str, state: tuple | None = None) -> Asm:
    a.g("numpy", "dtype").s(code).false().true().tuple3().reduce()
    if state is not None:
        a.mark()
        for v in state:
            a.none() if v is None else (a.s(v) if isinstance(v, str) else a.i(v))
        a.tuple().build()
    return a


# ---------------------------------------------------------------- forged torch zip files


class FakeStorage:
    def __init__(self, key: str, numel: int, kind: str = "FloatStorage") -> None:
        self.key, self.numel, self.kind = key, numel, kind


class FakeTensor:
    """Pickles as ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` with any numbers."""

    def __init__(self, storage: FakeStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def write_torch_zip(path: Path, payload: Any, storages: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> Path:
    """A torch.save-layout zip whose data.pkl pickles ``payload`` (FakeStorage -> persistent ids)."""
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, FakeStorage):
                return ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
            return None

    P(buf, protocol=2).dump(payload)
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", b"little")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", b"3\n")
    return path


def tiny_generator(**overrides: Any) -> StyleGAN2Generator:
    torch.manual_seed(0)
    cfg = dict(img_resolution=8, img_channels=1, z_dim=4, w_dim=4, mapping_layers=1, channel_base=32, channel_max=4)
    cfg.update(overrides)
    return StyleGAN2Generator(StyleGAN2Config(**cfg)).eval()


def native_payload(G: StyleGAN2Generator) -> dict[str, Any]:
    return {"format": "brgm-pyro-generator", "version": 1, "architecture": "stylegan2",
            "config": G.config.to_dict(), "state_dict": {}, "metadata": {}}


# ---------------------------------------------------------------- the builders


def numpy_void_dtype(d: Path) -> Path:
    """Issue 9's first segfault: a void dtype given an object field by BUILD with its flags cleared,
    then a scalar of it from 8 file bytes (numpy would read them as an object pointer), used as the
    record's class_name, which a loader formats with str()."""
    def body(a: Asm) -> None:
        a.g("torch_utils.persistence", "_reconstruct_persistent_obj").empty_dict().mark()
        a.s("type").s("class").s("class_name")
        a.g("numpy.core.multiarray", "scalar")
        a.g("numpy", "dtype").s("V8").false().true().tuple3().reduce()
        a.mark().i(3).s("|").none().s("f0").tuple1().empty_dict().s("f0")
        numpy_dtype(a, "O8", (3, "|", None, None, None, -1, -1, 63))
        a.i(0).tuple2().setitem().i(8).i(1).i(0).tuple().build()
        a.b(b"\x41" * 8).tuple2().reduce()
        a.s("state").empty_dict().setitems().tuple1().reduce()
    data = g_ema_pickle(body)
    (d / "void-dtype.pkl").write_bytes(data)
    return d / "void-dtype.pkl"


def numpy_reconstruct_short_build(d: Path) -> Path:
    """numpy ``_reconstruct`` then a BUILD whose object list is shorter than the shape."""
    def body(a: Asm) -> None:
        a.g("numpy.core.multiarray", "_reconstruct").g("numpy", "ndarray").i(0).tuple1().b(b"b").tuple3().reduce()
        a.mark().i(1).i(1000).tuple1()
        numpy_dtype(a, "O", (3, "|", None, None, None, -1, -1, 63))
        a.false().empty_list().tuple().build()
    (d / "reconstruct.pkl").write_bytes(g_ema_pickle(body))
    return d / "reconstruct.pkl"


def numpy_float_array_short_bytes(d: Path) -> Path:
    """A plain float64 array whose shape needs far more bytes than given."""
    def body(a: Asm) -> None:
        a.g("numpy._core.multiarray", "_reconstruct").g("numpy", "ndarray").i(0).tuple1().b(b"b").tuple3().reduce()
        a.mark().i(1).i(10**8).tuple1()
        numpy_dtype(a, "f8", (3, "<", None, None, None, -1, -1, 0))
        a.false().b(b"\x00" * 16).tuple().build()
    (d / "short-array.pkl").write_bytes(g_ema_pickle(body))
    return d / "short-array.pkl"


def numpy_object_scalar(d: Path) -> Path:
    def body(a: Asm) -> None:
        a.g("numpy.core.multiarray", "scalar")
        numpy_dtype(a, "O8", (3, "|", None, None, None, -1, -1, 63))
        a.b(b"\x00" * 8).tuple2().reduce()
    (d / "object-scalar.pkl").write_bytes(g_ema_pickle(body))
    return d / "object-scalar.pkl"


def tensor_setstate(d: Path) -> Path:
    """A real tensor, then BUILD with a 4-tuple (Tensor.__setstate__ would call set_ on it)."""
    G = tiny_generator()
    blob_path = d / "_blob.pkl"
    blob_path.write_bytes(pickle.dumps(G.mapping.w_avg.clone(), protocol=3))
    head = blob_path.read_bytes()[2:-1]  # the tensor-building opcodes, without PROTO / STOP
    blob_path.unlink()

    def body(a: Asm) -> None:
        a.raw(head).mark().i(0).i(0).i(10**9).tuple1().i(1).tuple1().tuple().build()
    (d / "tensor-setstate.pkl").write_bytes(g_ema_pickle(body))
    return d / "tensor-setstate.pkl"


def os_system_pickle(d: Path) -> Path:
    marker = d / "PWNED-os-system"
    data = g_ema_pickle(lambda a: a.g("os", "system").s(f"touch {marker}").tuple1().reduce())
    (d / "os-system.pkl").write_bytes(data)
    return d / "os-system.pkl"


def eval_via_stack_global(d: Path) -> Path:
    data = g_ema_pickle(lambda a: a.s("builtins").s("eval").raw(b"\x93").s("1+1").tuple1().reduce())
    (d / "eval.pkl").write_bytes(data)
    return d / "eval.pkl"


def inst_opcode(d: Path) -> Path:
    data = g_ema_pickle(lambda a: a.mark().s("echo hi").raw(b"ios\nsystem\n"))
    (d / "inst.pkl").write_bytes(data)
    return d / "inst.pkl"


def module_src_without_tensors(d: Path) -> Path:
    """A Generator record whose module_src would create a marker file if it were run."""
    marker = d / "PWNED-module-src"

    def body(a: Asm) -> None:
        a.g("torch_utils.persistence", "_reconstruct_persistent_obj").empty_dict().mark()
        a.s("type").s("class").s("version").i(6).s("class_name").s("Generator")
        a.s("module_src").s(HOSTILE_MODULE_SRC.format(marker=marker))
        a.s("state").empty_dict().mark().s("_init_kwargs").empty_dict().mark()
        for k, v in dict(z_dim=4, w_dim=4, img_resolution=8, img_channels=1).items():
            a.s(k).i(v)
        a.setitems().setitems().setitems().tuple1().reduce()
    (d / "module-src.pkl").write_bytes(g_ema_pickle(body))
    return d / "module-src.pkl"


def huge_channel_max_records(d: Path) -> Path:
    """The issue's 287-byte pickle: kwargs asking for channel_max 4000 and no tensors at all."""
    def body(a: Asm) -> None:
        a.g("torch_utils.persistence", "_reconstruct_persistent_obj").empty_dict().mark()
        a.s("type").s("class").s("class_name").s("Generator").s("state").empty_dict().mark()
        a.s("_init_kwargs").empty_dict().mark()
        for k, v in dict(z_dim=512, w_dim=512, img_resolution=1024, img_channels=3).items():
            a.s(k).i(v)
        a.s("synthesis_kwargs").empty_dict().mark().s("channel_max").i(4000).s("channel_base").i(1 << 22).setitems()
        a.s("mapping_kwargs").empty_dict().mark().s("num_layers").i(0).setitems()
        a.setitems().setitems().setitems().tuple1().reduce()
    (d / "channel-max.pkl").write_bytes(g_ema_pickle(body))
    return d / "channel-max.pkl"


def huge_channel_max_real_tensors(d: Path) -> Path:
    """A valid tiny network pickle whose kwargs claim channel_max 4000 and w_dim 3000."""
    G = tiny_generator()

    def tamper(record: Persistent) -> None:
        kwargs = record.meta["state"]["_init_kwargs"]
        kwargs["synthesis_kwargs"]["channel_max"] = 4000
        kwargs["w_dim"] = 3000
    return write_network_pickle(G, d / "channel-max-real.pkl", d / "PWNED-marker", tamper=tamper)


def non_integer_kwargs(d: Path) -> Path:
    G = tiny_generator()

    def tamper(record: Persistent) -> None:
        record.meta["state"]["_init_kwargs"]["img_resolution"] = 8.5
    return write_network_pickle(G, d / "float-kwarg.pkl", d / "PWNED-marker", tamper=tamper)


def dag_records(d: Path, levels: int = 60) -> Path:
    """Persistent records sharing their children: 2**60 paths from the root through 60 records."""
    with _stand_in_modules():
        node = Persistent("Leaf", dict(_parameters=OrderedDict(), _buffers=OrderedDict(), _modules=OrderedDict()))
        for i in range(levels):
            node = Persistent("Generator" if i == levels - 1 else "Node",
                              dict(_parameters=OrderedDict(), _buffers=OrderedDict(),
                                   _modules=OrderedDict(a=node, b=node), _init_kwargs={}))
        data = pickle.dumps({"G_ema": node}, protocol=4)
    (d / "dag.pkl").write_bytes(data)
    return d / "dag.pkl"


def self_containing_record(d: Path) -> Path:
    """A Generator record listed among its own sub-modules (only an opcode stream can say this)."""
    a = Asm().empty_dict().put(0).s("G_ema")
    a.g("torch_utils.persistence", "_reconstruct_persistent_obj").empty_dict().mark()
    a.s("type").s("class").s("class_name").s("Generator").s("state").empty_dict().put(2)
    a.setitems().tuple1().reduce().put(3).setitem()
    a.get(2).s("_modules").empty_dict().put(4).setitem().pop()
    a.get(4).s("self").get(3).setitem().pop()
    (d / "self-record.pkl").write_bytes(a.bytes())
    return d / "self-record.pkl"


def dag_tuple_key(d: Path, levels: int = 80) -> Path:
    """A dict key that is a tuple DAG: hashing it naively visits 2**80 nodes."""
    a = Asm().empty_dict().s("G_ema").empty_dict().empty_tuple().put(0)
    for i in range(levels):
        a.pop().get(i).get(i).tuple2().put(i + 1)
    a.i(1).setitem().setitem()
    (d / "dag-key.pkl").write_bytes(a.bytes())
    return d / "dag-key.pkl"


def deep_lists(d: Path, depth: int = 200_000) -> Path:
    data = b"\x80\x02}X\x05\x00\x00\x00G_ema" + b"]" * depth + b"a" * (depth - 1) + b"s."
    (d / "deep.pkl").write_bytes(data)
    return d / "deep.pkl"


def huge_binbytes_length(d: Path) -> Path:
    data = b"\x80\x04}X\x05\x00\x00\x00G_ema\x8e" + struct.pack("<Q", 1 << 60) + b"abc"
    (d / "binbytes8.pkl").write_bytes(data)
    return d / "binbytes8.pkl"


def legacy_blob_huge_numel(d: Path) -> Path:
    """A nested storage blob whose record claims 10**12 floats but holds one."""
    t = torch.zeros(1)
    blob = t._typed_storage().__reduce__()[1][0]
    blob = blob.replace(b"K\x01N", b"\x8a\x06" + (10**12).to_bytes(6, "little") + b"N", 1)
    blob = blob[:-12] + struct.pack("<q", 10**12) + blob[-4:]  # the element count before the data
    data = g_ema_pickle(lambda a: a.g("torch.storage", "_load_from_bytes").b(blob).tuple1().reduce())
    (d / "blob-numel.pkl").write_bytes(data)
    return d / "blob-numel.pkl"


def opcode_flood(d: Path) -> Path:
    data = b"\x80\x02" + b"N0" * 2_100_000 + b"N."
    (d / "flood.pkl").write_bytes(data)
    return d / "flood.pkl"


def storage_too_small_tensor(d: Path) -> Path:
    """Project format: w_avg declared with 4 elements on a storage of 1 (torch would grow it)."""
    G = tiny_generator()
    payload = native_payload(G)
    storages = {}
    for i, (k, v) in enumerate(G.state_dict().items()):
        storages[str(i)] = v.contiguous().numpy().tobytes()
        payload["state_dict"][k] = FakeTensor(FakeStorage(str(i), v.numel()), 0, tuple(v.shape),
                                              tuple(v.contiguous().stride()))
    w = list(G.state_dict()).index("mapping.w_avg")
    storages[str(w)] = b"\x00" * 4
    payload["state_dict"]["mapping.w_avg"] = FakeTensor(FakeStorage(str(w), 1), 0, (4,), (1,))
    return write_torch_zip(d / "small-storage.pt", payload, storages)


def storage_numel_mismatch(d: Path) -> Path:
    """Project format: a storage record claiming 10**9 floats whose member holds 16 bytes."""
    payload = native_payload(tiny_generator())
    payload["state_dict"]["mapping.w_avg"] = FakeTensor(FakeStorage("0", 10**9), 0, (4,), (1,))
    return write_torch_zip(d / "numel.pt", payload, {"0": b"\x00" * 16})


def stride0_project(d: Path) -> Path:
    """The issue's 1.9 KB project file: config asks for a huge net, tensors are stride-0 views of 1 float."""
    payload = native_payload(tiny_generator())
    payload["config"].update(w_dim=60000, z_dim=60000)
    payload["state_dict"]["mapping.fc0.weight"] = FakeTensor(FakeStorage("0", 1), 0, (60000, 60000), (0, 0))
    return write_torch_zip(d / "stride0.pt", payload, {"0": b"\x00" * 4})


def stride0_within_bounds(d: Path) -> Path:
    """A stride-0 tensor inside the config bounds but declaring 16 GB."""
    payload = native_payload(tiny_generator())
    payload["state_dict"]["mapping.fc0.weight"] = FakeTensor(FakeStorage("0", 1), 0, (65536, 65536), (0, 0))
    return write_torch_zip(d / "stride0-b.pt", payload, {"0": b"\x00" * 4})


def negative_stride(d: Path) -> Path:
    payload = native_payload(tiny_generator())
    payload["state_dict"]["mapping.w_avg"] = FakeTensor(FakeStorage("0", 4), 3, (4,), (-1,))
    return write_torch_zip(d / "neg-stride.pt", payload, {"0": b"\x00" * 16})


def stride0_rosinality(d: Path) -> Path:
    ckpt = rosinality_state(tiny_generator())
    payload: dict[str, Any] = {"g_ema": {}, "latent_avg": None, "args": None}
    storages = {}
    for i, (k, v) in enumerate(ckpt["g_ema"].items()):
        v = v.contiguous()
        storages[str(i)] = v.numpy().tobytes()
        payload["g_ema"][k] = FakeTensor(FakeStorage(str(i), v.numel()), 0, tuple(v.shape), tuple(v.stride()))
    payload["g_ema"]["style.1.weight"] = FakeTensor(FakeStorage("x", 1), 0, (50000, 50000), (0, 0))
    storages["x"] = b"\x00" * 4
    return write_torch_zip(d / "ros-stride0.pt", payload, storages)


def rosinality_many_blocks(d: Path) -> Path:
    """rosinality keys naming block 999 (2**1002 pixels) with tiny tensors."""
    g = {k: torch.zeros(1) for k in ("style.1.weight", "style.1.bias", "input.input", "to_rgbs.999.bias")}
    torch.save({"g_ema": g, "latent_avg": torch.zeros(1), "args": argparse.Namespace(size=8)}, d / "ros-blocks.pt")
    return d / "ros-blocks.pt"


def zip_bomb(d: Path) -> Path:
    """A 64 MB zero member deflated to a few dozen KB."""
    G = tiny_generator()
    save_generator(G, d / "_plain.pt")
    with zipfile.ZipFile(d / "_plain.pt") as src, zipfile.ZipFile(d / "bomb.pt", "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
        z.writestr("_plain/data/bomb", b"\x00" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    (d / "_plain.pt").unlink()
    return d / "bomb.pt"


def bit_flipped_bundled(d: Path) -> Path:
    data = bytearray(pretrained_path("fashion-mnist-32.pt").read_bytes())
    with zipfile.ZipFile(pretrained_path("fashion-mnist-32.pt")) as z:
        info = z.getinfo("fashion-mnist-32/data/2")
    data[info.header_offset + 200] ^= 0x10  # inside the member's bytes (its local header is < 200 bytes)
    (d / "flipped.pt").write_bytes(data)
    return d / "flipped.pt"


def truncated_bundled(d: Path) -> Path:
    data = pretrained_path("fashion-mnist-32.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) * 2 // 3])
    return d / "truncated.pt"


def nan_weights(d: Path) -> Path:
    G = tiny_generator()
    with torch.no_grad():
        G.synthesis.b8.conv1.weight[0, 0, 1, 1] = float("nan")
        G.mapping.fc0.bias[0] = float("inf")
    save_generator(G, d / "nan.pt")
    return d / "nan.pt"


def fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo.pkl")
    return d / "fifo.pkl"


def dev_zero(d: Path) -> Path:
    return Path("/dev/zero")


def symlink_loop(d: Path) -> Path:
    os.symlink(d / "loop-b", d / "loop-a")
    os.symlink(d / "loop-a", d / "loop-b")
    return d / "loop-a"


def dangling_symlink(d: Path) -> Path:
    os.symlink(d / "nowhere.pkl", d / "dangling.pkl")
    return d / "dangling.pkl"


def directory(d: Path) -> Path:
    (d / "folder.pt").mkdir()
    return d / "folder.pt"


def random_bytes(d: Path) -> Path:
    (d / "random.bin").write_bytes(bytes(range(256)) * 4)
    return d / "random.bin"


# ---------------------------------------------------------------- round 2 (issue 23): work, aliasing, allocation
# Each builder takes a size parameter ``n`` (``SCALABLE`` lists the sizes the linear-time property uses).

P61 = 2**61 - 1
_XX1, _XX2, _XX5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
_M64 = (1 << 64) - 1


def _tuple_step(acc: int, lane: int) -> int:
    """One round of CPython's (3.8+) tuple hash on a 64-bit accumulator."""
    acc = (acc + (lane & _M64) * _XX2) & _M64
    acc = ((acc << 31) | (acc >> 33)) & _M64
    return (acc * _XX1) & _M64


COLLIDING_PAIRS = (((301145690, 0), (1383598088, -1755844984)), ((954658620, 0), (2037111018, -1755844984)),
                   ((46852223, 0), (1129304621, -1755844984)), ((207867568, 0), (1290319966, -1755844984)),
                   ((455967570, 0), (1538419968, -1755844984)), ((432976587, 0), (1515428985, -1755844984)))
"""Six two-element collisions of the tuple hash, chained (found by ``find_colliding_pairs(6)``, about
20 s; ``test_hostile_checkpoints`` checks with ``hash`` that the 64 tuples really share one hash)."""


def find_colliding_pairs(k: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """k chained two-element collisions of the tuple hash: at each stage, 2**20 random first elements a,
    sorted by what they leave in the accumulator, give two whose gap a second small int b closes."""
    import numpy as np

    inv2 = pow(_XX2, -1, 1 << 64)
    acc, pairs = _XX5, []
    rng = np.random.default_rng(0)
    for _ in range(k):
        a = np.unique(rng.integers(1, 1 << 31, 1 << 20)).astype(np.uint64)  # consecutive ints never collide
        with np.errstate(over="ignore"):
            x = np.uint64(acc) + a * np.uint64(_XX2)
            x = (x << np.uint64(31)) | (x >> np.uint64(33))
            g = x * np.uint64(_XX1) * np.uint64(inv2)
        order = np.argsort(g)
        gaps = np.diff(g[order].astype(np.uint64))
        hit = int(np.flatnonzero((gaps < (1 << 31) - 2) & (gaps > 1))[0])
        a0, a1 = int(a[order[hit]]), int(a[order[hit + 1]])
        b1 = -int(gaps[hit])  # acc1(a0) + 0 == acc1(a1) + b1 * XX2 (mod 2**64)
        pairs.append(((a0, 0), (a1, b1)))
        acc = _tuple_step(_tuple_step(acc, a0), 0)
    return pairs


def colliding_tuples(k: int = 6) -> list[tuple[int, ...]]:
    """2**k (k <= 6) distinct tuples of 2k ints in [-2**31, 2**31) sharing one hash (a Joux multicollision:
    any choice of one side of each chained pair ends in the same accumulator)."""
    keys: list[tuple[int, ...]] = [()]
    for pair in COLLIDING_PAIRS[:k]:
        keys = [key + choice for key in keys for choice in pair]
    return keys


def hash_collision_tuple_keys(d: Path, n: int = 6) -> Path:
    """A dict whose 2**n tuple keys of small ints share one hash (would make insertion quadratic)."""
    a = Asm().empty_dict().s("G_ema").empty_dict().mark()
    for key in colliding_tuples(n):
        a.mark()
        for v in key:
            a.i(v)
        a.tuple().none()
    a.setitems().setitem()
    (d / "collide-tuples.pkl").write_bytes(a.bytes())
    return d / "collide-tuples.pkl"


def _int_keys(a: Asm, n: int) -> Asm:
    for k in range(1, n + 1):
        a.i(k * P61)
    return a


def hash_collision_int_dict(d: Path, n: int = 4000) -> Path:
    """The issue's dict: n int keys, multiples of 2**61 - 1 (one hash)."""
    a = Asm().empty_dict().s("G_ema").empty_dict().mark()
    for k in range(1, n + 1):
        a.i(k * P61).none()
    a.setitems().setitem()
    (d / "collide-int-dict.pkl").write_bytes(a.bytes())
    return d / "collide-int-dict.pkl"


def hash_collision_int_set(d: Path, n: int = 4000) -> Path:
    """``builtins.set([...])`` of n colliding ints."""
    a = Asm().empty_dict().s("G_ema").g("builtins", "set").mark()
    _int_keys(a, n).raw(b"l").tuple1().reduce().setitem()
    (d / "collide-set.pkl").write_bytes(a.bytes())
    return d / "collide-set.pkl"


def hash_collision_frozenset(d: Path, n: int = 4000) -> Path:
    """A ``FROZENSET`` (protocol 4) of n colliding ints."""
    a = Asm().empty_dict().s("G_ema").mark()
    _int_keys(a, n).raw(b"\x91").setitem()
    (d / "collide-frozenset.pkl").write_bytes(a.bytes())
    return d / "collide-frozenset.pkl"


def huge_int_shape(d: Path, n: int = 1 << 17) -> Path:
    """A numpy array shape made of 32 references to one stored n-byte int (math.prod would take minutes)."""
    def body(a: Asm) -> None:
        a.raw(b"\x8b" + struct.pack("<I", n) + b"\x7f" * n).put(0).pop()
        a.g("numpy.core.multiarray", "_reconstruct").g("numpy", "ndarray").i(0).tuple1().b(b"b").tuple3().reduce()
        a.mark().i(1).mark()
        for _ in range(32):
            a.get(0)
        a.tuple()
        numpy_dtype(a, "f4")
        a.false().b(b"").tuple().build()
    (d / "huge-int-shape.pkl").write_bytes(g_ema_pickle(body))
    return d / "huge-int-shape.pkl"


def list_skip_scan(d: Path, n: int = 20000) -> Path:
    """A network pickle whose G_ema has n buffers and a list-valued ``_non_persistent_buffers_set`` of n names
    (``name in list`` per buffer: quadratic)."""
    names = [f"buf{i}" for i in range(n)]

    def tamper(record: Persistent) -> None:
        record.meta["state"]["_non_persistent_buffers_set"] = names[::-1]
        buffers = record.meta["state"]["_buffers"]
        one = torch.zeros(1)
        for name in names:
            buffers[name] = one
        buffers["not_skipped"] = one

    return write_network_pickle(tiny_generator(), d / "skip-list.pkl", d / "PWNED-skip", tamper=tamper)


def _raw_zip(entries: int, zip64_dir_size: int | None = None) -> bytes:
    """One stored member and a central directory of ``entries`` records all naming it; the end record
    claims one entry. ``zip64_dir_size``: a zip64 end record declaring that directory size instead."""
    name, payload = b"a/data.pkl", b"\x80\x02N."
    crc = __import__("zlib").crc32(payload)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(payload), len(payload), len(name), 0)
    out = bytearray(local + name + payload)
    record = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, 0, 0, 0, crc, len(payload), len(payload),
                         len(name), 0, 0, 0, 0, 0, 0) + name
    cd_offset = len(out)
    out += record * entries
    cd_size = len(out) - cd_offset
    if zip64_dir_size is not None:
        here = len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, zip64_dir_size, cd_offset)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, here, 1)
        out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, cd_size, cd_offset, 0)
    return bytes(out)


def zip_many_members(d: Path, n: int = 100_001) -> Path:
    """A zip whose central directory holds n entries (the end record says 1)."""
    (d / "many-members.pt").write_bytes(_raw_zip(n))
    return d / "many-members.pt"


def zip64_huge_directory(d: Path) -> Path:
    """A zip64 end record declaring a 1 TiB central directory."""
    (d / "zip64-dir.pt").write_bytes(_raw_zip(1, zip64_dir_size=1 << 40))
    return d / "zip64-dir.pt"


def aliased_state_entries(d: Path, n: int = 32) -> Path:
    """Project format: n mapping layers of 1024 x 1024 whose weights are all one stride-0 tensor (one
    rebuild, 4 MiB declared; entries of equal shapes share one tensor): the network would take n x 4 MiB."""
    from brgm_pyro.generators.stylegan2.generator import stylegan2_state_shapes

    payload = native_payload(tiny_generator())
    payload["config"].update(z_dim=1024, w_dim=1024, mapping_layers=n)
    config = StyleGAN2Config.from_dict(payload["config"])
    shared: dict[tuple, FakeTensor] = {}
    storage = FakeStorage("0", 1)
    for key, shape in stylegan2_state_shapes(config).items():
        shape = tuple(shape)
        shared.setdefault(shape, FakeTensor(storage, 0, shape, (0,) * len(shape)))
        payload["state_dict"][key] = shared[shape]
    return write_torch_zip(d / "aliased.pt", payload, {"0": b"\x00" * 4})


def repeated_blob_rebuild(d: Path, n: int = 2000) -> Path:
    """One stored 4 MiB nested storage blob rebuilt n times by ``_load_from_bytes`` (n x 4 MiB of copies)."""
    blob = torch.zeros(1 << 20)._typed_storage().__reduce__()[1][0]

    def body(a: Asm) -> None:
        a.empty_list().mark().g("torch.storage", "_load_from_bytes").put(1).b(blob).put(0).tuple1().reduce()
        for _ in range(n - 1):
            a.get(1).get(0).tuple1().reduce()
        a.appends()
    (d / "blob-rebuild.pkl").write_bytes(g_ema_pickle(body))
    return d / "blob-rebuild.pkl"


def sparse_zeros(d: Path, n: int = 3 << 30) -> Path:
    """A sparse file of n zero bytes (reading it whole would allocate n bytes)."""
    with open(d / "sparse.pt", "wb") as f:
        f.truncate(n)
    return d / "sparse.pt"


def sparse_binbytes(d: Path, n: int = 3 << 30) -> Path:
    """A pickle header and a BINBYTES8 whose n zero bytes are a hole in a sparse file (no STOP)."""
    with open(d / "sparse-binbytes.pkl", "wb") as f:
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", n))
        f.truncate(11 + n)
    return d / "sparse-binbytes.pkl"


def name_too_long(d: Path) -> Path:
    return d / ("x" * 5000 + ".pt")


def _metadata_file(d: Path, name: str, recommended: Any) -> Path:
    """A valid tiny project file whose ``metadata.recommended_config`` is ``recommended`` (written with
    torch.save: save_generator refuses some of these values)."""
    G = tiny_generator()
    payload = native_payload(G)
    payload["state_dict"] = {k: v.clone() for k, v in G.state_dict().items()}
    payload["metadata"] = {"recommended_config": recommended}
    torch.save(payload, d / name)
    return d / name


def metadata_unknown_key(d: Path) -> Path:
    return _metadata_file(d, "meta-unknown.pt", {"sigma_pixel": 0.1, "lambda_w": 3})


def metadata_string_sigma(d: Path) -> Path:
    return _metadata_file(d, "meta-string.pt", {"sigma_pixel": "0.1"})


def metadata_tensor(d: Path) -> Path:
    return _metadata_file(d, "meta-tensor.pt", torch.zeros(3))


def metadata_huge_int(d: Path) -> Path:
    return _metadata_file(d, "meta-huge.pt", {"kappa": 10**40})


def metadata_tiny_sigma(d: Path) -> Path:
    return _metadata_file(d, "meta-tiny.pt", {"sigma_pixel": 1e-300})


SCALABLE: dict[str, tuple[Callable[[Path, int], Path], tuple[int, ...]]] = {
    "hash_collision_int_dict": (hash_collision_int_dict, (2000, 8000, 32000)),
    "hash_collision_int_set": (hash_collision_int_set, (2000, 8000, 32000)),
    "hash_collision_frozenset": (hash_collision_frozenset, (2000, 8000, 32000)),
    "huge_int_shape": (huge_int_shape, (1 << 14, 1 << 16, 1 << 18)),
    "list_skip_scan": (list_skip_scan, (2000, 8000, 32000)),
    "zip_many_members": (zip_many_members, (6000, 24000, 96000)),
    "repeated_blob_rebuild": (repeated_blob_rebuild, (50, 200, 800)),
}
"""Attack classes whose work grew faster than the file, with the sizes ``n`` of the linear-time property."""


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "numpy_void_dtype": (numpy_void_dtype, r"numpy dtype 'V8' is not a plain numeric dtype"),
    "numpy_reconstruct_short_build": (numpy_reconstruct_short_build, r"numpy dtype 'O' is not a plain numeric"),
    "numpy_float_array_short_bytes": (numpy_float_array_short_bytes, r"needs 800000000 bytes, the file holds 16"),
    "numpy_object_scalar": (numpy_object_scalar, r"numpy dtype 'O8' is not a plain numeric"),
    "tensor_setstate": (tensor_setstate, r"sets the state of a Tensor"),
    "os_system": (os_system_pickle, r"global os\.system, which is not on brgm-pyro's allow-list"),
    "eval_stack_global": (eval_via_stack_global, r"global builtins\.eval"),
    "inst_opcode": (inst_opcode, r"opcode INST"),
    "module_src": (module_src_without_tensors, r"mapping_kwargs says 8 layers but the weights hold 0"),
    "huge_channel_max_no_tensors": (huge_channel_max_records, r"mapping_layers=0 is outside \[1, 32\]"),
    "huge_channel_max_real_tensors": (huge_channel_max_real_tensors, r"wrong shape|missing"),
    "non_integer_kwargs": (non_integer_kwargs, r"img_resolution must be an int, got 8\.5"),
    "dag_records": (dag_records, r"reached twice|nest deeper than 32 levels"),
    "self_containing_record": (self_containing_record, r"reached twice"),
    "dag_tuple_key": (dag_tuple_key, r"dict key or set item of type tuple is not allowed"),
    "deep_lists": (deep_lists, r"expected a network object, got list"),
    "huge_binbytes8": (huge_binbytes_length, r"truncated"),
    "legacy_blob_huge_numel": (legacy_blob_huge_numel, r"declares 1000000000000 elements but holds 4 bytes"),
    "opcode_flood": (opcode_flood, r"more than 2000000 opcodes"),
    "storage_too_small": (storage_too_small_tensor, r"reaches element 3 of a storage holding 1"),
    "storage_numel_mismatch": (storage_numel_mismatch, r"declares 1000000000 .* elements but its member holds 16"),
    "stride0_project": (stride0_project, r"declare \d+ bytes in all"),
    "stride0_within_bounds": (stride0_within_bounds, r"declare \d+ bytes in all"),
    "negative_stride": (negative_stride, r"negative entries"),
    "stride0_rosinality": (stride0_rosinality, r"declare \d+ bytes in all"),
    "rosinality_many_blocks": (rosinality_many_blocks, r"to_rgbs\.\* blocks \[999\]"),
    "zip_bomb": (zip_bomb, r"member '_plain/data/bomb' is compressed \(declared 67108864 bytes.*zip bomb guard"),
    "bit_flipped_zip": (bit_flipped_bundled, r"fails its CRC-32 check"),
    "truncated_zip": (truncated_bundled, r"truncated or corrupt zip archive"),
    "nan_weights": (nan_weights, r"NaN or infinite weights in: mapping\.fc0\.bias, synthesis\.b8\.conv1\.weight"),
    "fifo": (fifo, r"is a named pipe \(FIFO\)"),
    "dev_zero": (dev_zero, r"is a device file"),
    "symlink_loop": (symlink_loop, r"symbolic link loop"),
    "dangling_symlink": (dangling_symlink, r"symbolic link to a file that does not exist"),
    "directory": (directory, r"is a directory"),
    "random_bytes": (random_bytes, r"neither a torch zip file nor a pickle"),
    # round 2 (issue 23)
    "hash_collision_tuple_keys": (hash_collision_tuple_keys, r"more than 8 keys of one dict or set share a hash"),
    "hash_collision_int_dict": (hash_collision_int_dict, r"int dict key or set item .* outside \[-2\*\*31, 2\*\*31\)"),
    "hash_collision_int_set": (hash_collision_int_set, r"int dict key or set item .* outside \[-2\*\*31, 2\*\*31\)"),
    "hash_collision_frozenset": (hash_collision_frozenset, r"int dict key or set item .* outside"),
    "huge_int_shape": (huge_int_shape, r"int of 131072 bytes; ints of more than 256 bits are refused"),
    "list_skip_scan": (list_skip_scan, r"unexpected: not_skipped$"),
    "zip_many_members": (zip_many_members, r"more than 100000 members"),
    "zip64_huge_directory": (zip64_huge_directory, r"central directory of 1099511627776 bytes, more than"),
    "aliased_state_entries": (aliased_state_entries, r"state entries hold \d+ bytes in all .*more than the"),
    "repeated_blob_rebuild": (repeated_blob_rebuild, r"storages take \d+ bytes in all, more than"),
    "sparse_zeros": (sparse_zeros, r"neither a torch zip file nor a pickle|cannot be mapped into memory"),
    "sparse_binbytes": (sparse_binbytes, r"truncated \(no STOP opcode|cannot be mapped into memory"),
    "name_too_long": (name_too_long, r"cannot be accessed: File name too long"),
    "metadata_unknown_key": (metadata_unknown_key, r"metadata.recommended_config has unknown keys \['lambda_w'\]"),
    "metadata_string_sigma": (metadata_string_sigma, r"metadata.recommended_config.sigma_pixel must be a number"),
    "metadata_tensor": (metadata_tensor, r"metadata.recommended_config is a Tensor"),
    "metadata_huge_int": (metadata_huge_int, r"metadata.recommended_config.kappa must be a number, got a huge int"),
    "metadata_tiny_sigma": (metadata_tiny_sigma, r"sigma_pixel=1e-300 is not a finite number in \[1e-06, 1000\]"),
}
