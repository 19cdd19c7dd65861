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
}
