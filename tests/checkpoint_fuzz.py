"""Property-based fuzzing of the checkpoint loader (run by ``test_checkpoint_fuzz`` in a child process).

Property: for any bytes, ``load_generator(file)`` returns a ``StyleGAN2Generator`` or raises
``CheckpointError`` -- never another exception, never a crash or hang. Inputs:

- mutated real checkpoints: bit flips, truncations, byte insertions and overwrites of a small
  valid NVIDIA-layout network pickle and of a small valid project-format (zip) file;
- the project file with its ``data.pkl`` mutated and the zip rebuilt with correct CRCs (so the
  mutation reaches the unpickler instead of failing the CRC check);
- random pickle opcode streams built from a vocabulary of opcodes, allowed and refused globals
  and the keys real checkpoints use, alone or spliced into the valid network pickle.

``BRGM_FUZZ_EXAMPLES`` sets the number of examples per input kind (default 40); with the
variable set, the search is also randomised (otherwise derandomised, reproducible in CI).
Usage: ``python tests/checkpoint_fuzz.py`` (exit status 0 = property held).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoint_writers import write_network_pickle  # noqa: E402

from brgm_pyro.generators import (  # noqa: E402
    CheckpointError, StyleGAN2Config, StyleGAN2Generator, load_generator, save_generator,
)

EXAMPLES = int(os.environ.get("BRGM_FUZZ_EXAMPLES", "40"))
WORK = Path(tempfile.mkdtemp(prefix="brgm-fuzz-"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize="BRGM_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=list(HealthCheck))


def _seed_files() -> tuple[bytes, bytes]:
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(img_resolution=8, img_channels=1, z_dim=4, w_dim=4, mapping_layers=1,
                                           channel_base=32, channel_max=4)).eval()
    write_network_pickle(G, WORK / "seed.pkl", WORK / "PWNED-module-src")
    save_generator(G, WORK / "seed.pt")
    return (WORK / "seed.pkl").read_bytes(), (WORK / "seed.pt").read_bytes()


SEED_PICKLE, SEED_ZIP = _seed_files()
_counter = [0]


def check(data: bytes) -> str:
    """Load ``data`` from a file: a generator or a CheckpointError; anything else propagates."""
    _counter[0] += 1
    path = WORK / f"case-{_counter[0] % 4}.bin"
    path.write_bytes(data)
    try:
        G = load_generator(path, device="cpu")
    except CheckpointError:
        return "refused"
    assert isinstance(G, StyleGAN2Generator)
    return "loaded"


# ---------------------------------------------------------------- mutations of real files

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
)


def mutate(data: bytes, edits: list) -> bytes:
    out = bytearray(data)
    for kind, where, arg in edits:
        if not out:
            break
        pos = min(int(where * len(out)), len(out) - 1)
        if kind == "flip":
            out[pos] ^= 1 << arg
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = arg
        else:
            out[pos:pos + len(arg)] = arg
    return bytes(out)


def rezip_with_pickle(zip_bytes: bytes, edits: list) -> bytes:
    """The project file with its data.pkl mutated, re-zipped with valid CRCs."""
    src = zipfile.ZipFile(io.BytesIO(zip_bytes))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            member = src.read(info)
            if info.filename.endswith("/data.pkl"):
                member = mutate(member, edits)
            dst.writestr(info.filename, member)
    return buf.getvalue()


# ---------------------------------------------------------------- random opcode streams


def _s(text: str) -> bytes:
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


GLOBALS = [("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
           ("torch.storage", "_load_from_bytes"), ("torch_utils.persistence", "_reconstruct_persistent_obj"),
           ("collections", "OrderedDict"), ("builtins", "set"), ("dnnlib.util", "EasyDict"), ("argparse", "Namespace"),
           ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
           ("numpy.core.multiarray", "scalar"), ("torch", "FloatStorage"), ("torch", "float32"),
           ("os", "system"), ("builtins", "eval"), ("torch", "Tensor"), ("builtins", "getattr")]
WORDS = ["G_ema", "type", "class", "class_name", "Generator", "state", "_modules", "_parameters", "_buffers",
         "_init_kwargs", "z_dim", "w_dim", "img_resolution", "img_channels", "storage", "cpu", "0", "f8", "O", "V8",
         "<", "|", "format", "brgm-pyro-generator", "config", "state_dict", "g_ema"]

opcode = st.one_of(
    st.sampled_from([b"(", b")", b"]", b"}", b"N", b"\x88", b"\x89", b"t", b"\x85", b"\x86", b"\x87", b"R",
                     b"b", b"s", b"u", b"a", b"e", b"d", b"l", b"0", b"1", b"2", b"\x94", b"\x8f", b"\x90",
                     b"\x91", b"\x81", b"\x92", b"\x93", b"Q", b"\x8c\x00", b"."]),
    st.integers(0, 255).map(lambda i: b"K" + bytes([i])),
    st.integers(-2**31, 2**31 - 1).map(lambda i: b"J" + struct.pack("<i", i)),
    st.integers(0, 20).map(lambda i: b"h" + bytes([i])),
    st.integers(0, 20).map(lambda i: b"q" + bytes([i])),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: b"G" + struct.pack(">d", f)),
    st.sampled_from(WORDS).map(_s),
    st.binary(max_size=24).map(lambda b: b"C" + bytes([len(b)]) + b),
    st.sampled_from(GLOBALS).map(lambda g: b"c" + f"{g[0]}\n{g[1]}\n".encode()),
    st.binary(max_size=6),
)
opcode_stream = st.lists(opcode, max_size=60).map(lambda ops: b"\x80\x04" + b"".join(ops) + b".")


# ---------------------------------------------------------------- properties


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def fuzz_network_pickle(edits: list) -> None:
    check(mutate(SEED_PICKLE, edits))


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def fuzz_project_zip(edits: list) -> None:
    check(mutate(SEED_ZIP, edits))


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def fuzz_project_zip_pickle(edits: list) -> None:
    check(rezip_with_pickle(SEED_ZIP, edits))


@SETTINGS
@given(opcode_stream)
def fuzz_opcode_stream(data: bytes) -> None:
    check(data)


@SETTINGS
@given(opcode_stream, st.floats(0, 1))
def fuzz_opcodes_spliced_into_network_pickle(data: bytes, where: float) -> None:
    pos = 2 + int(where * (len(SEED_PICKLE) - 3))
    check(SEED_PICKLE[:pos] + data[2:-1] + SEED_PICKLE[pos:])


def main() -> int:
    assert check(SEED_PICKLE) == "loaded" and check(SEED_ZIP) == "loaded", "the seed files must load"
    failed = 0
    for fuzz in (fuzz_network_pickle, fuzz_project_zip, fuzz_project_zip_pickle, fuzz_opcode_stream,
                 fuzz_opcodes_spliced_into_network_pickle):
        try:
            fuzz()
            print(f"{fuzz.__name__}: {EXAMPLES} examples, property held", flush=True)
        except Exception:
            failed += 1
            print(f"{fuzz.__name__}: FAILED\n{traceback.format_exc()}", flush=True)
    if list(WORK.glob("PWNED*")):
        print("a payload ran", flush=True)
        failed += 1
    print(f"{_counter[0]} files loaded or refused", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
