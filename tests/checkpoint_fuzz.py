"""Property-based fuzzing of the checkpoint loader (run by ``test_checkpoint_fuzz`` in a child process).

Property: for any bytes, ``load_generator(file)`` returns a ``StyleGAN2Generator`` or raises
``CheckpointError`` -- never another exception, never a crash or hang. Inputs:

- mutated real checkpoints: bit flips, truncations, byte insertions and overwrites of a small
  valid NVIDIA-layout network pickle and of a small valid project-format (zip) file;
- the project file with its ``data.pkl`` mutated and the zip rebuilt with correct CRCs (so the
  mutation reaches the unpickler instead of failing the CRC check);
- random pickle opcode streams built from a vocabulary of opcodes, allowed and refused globals
  and the keys real checkpoints use, alone or spliced into the valid network pickle;
- well-formed project, rosinality and network files whose fields (format, version, config and
  init-kwarg values, state-dict entries, record state) are replaced by odd values: huge ints,
  NaN, strings, nested containers, tensors of other shapes and dtypes, NaN tensors;
- issue 23's attack classes at random sizes, alone or mutated (``hostile_checkpoints``: hash
  collisions in dicts / sets / frozensets / tuple keys, huge ints, list-valued skip sets, zip member
  floods and zip64 directories, aliased state entries, repeated blob rebuilds, bad metadata);
- project files whose metadata (``recommended_config``, ``recommended_configs``, ``image_preparation``,
  ``interval_scales``, ``feature_network``, unknown keys) holds odd values: a file that loads must then give a valid
  ``default_config`` (the metadata cannot crash a command later).

A ``CheckpointError`` made from an unexpected exception (``checkpoint_files.READER_BUG``) fails
the property.

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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checkpoint_writers import Persistent, rosinality_state, write_network_pickle  # noqa: E402

from brgm_pyro.corruptions import SuperResolution  # noqa: E402
from brgm_pyro.generators import (  # noqa: E402
    CheckpointError, StyleGAN2Config, StyleGAN2Generator, load_generator, save_generator,
)
from brgm_pyro.generators.checkpoint_files import READER_BUG  # noqa: E402
from brgm_pyro.models import default_config  # noqa: E402
from tests import hostile_checkpoints as hostile  # noqa: E402

EXAMPLES = int(os.environ.get("BRGM_FUZZ_EXAMPLES", "40"))
WORK = Path(tempfile.mkdtemp(prefix="brgm-fuzz-"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize="BRGM_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=list(HealthCheck))


def _seed_generator() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(StyleGAN2Config(img_resolution=8, img_channels=1, z_dim=4, w_dim=4, mapping_layers=1,
                                              channel_base=32, channel_max=4)).eval()


def _seed_files() -> tuple[bytes, bytes]:
    G = _seed_generator()
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
    except CheckpointError as err:
        assert READER_BUG not in str(err), str(err)
        return "refused"
    assert isinstance(G, StyleGAN2Generator)
    default_config(G, SuperResolution(2))  # the metadata a loaded file carries is usable
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


# ---------------------------------------------------------------- well-formed files with odd values

_tensor = st.tuples(st.lists(st.integers(0, 5), max_size=3),
                    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.uint8]),
                    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -3.0])).map(
    lambda t: torch.full(t[0], t[2]).to(t[1]) if t[1].is_floating_point else torch.zeros(t[0], dtype=t[1]))
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**70), st.integers(-5, 70), st.floats(),
                  st.text(max_size=6), _tensor)
odd_value = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                         max_leaves=6)
SEED_G = _seed_generator()
NATIVE_KEYS = ["format", "version", "architecture", "config", "state_dict", "metadata"]
CONFIG_KEYS = list(SEED_G.config.to_dict())
STATE_KEYS = list(SEED_G.state_dict())
KWARG_KEYS = ["z_dim", "w_dim", "img_resolution", "img_channels", "c_dim", "mapping_kwargs", "synthesis_kwargs",
              "synthesis_kwargs.channel_max", "synthesis_kwargs.channel_base", "synthesis_kwargs.conv_clamp",
              "synthesis_kwargs.architecture", "synthesis_kwargs.resample_filter", "mapping_kwargs.num_layers",
              "mapping_kwargs.lr_multiplier", "mapping_kwargs.layer_features"]


def _native_with(edits: list) -> bytes:
    payload = {"format": "brgm-pyro-generator", "version": 1, "architecture": "stylegan2",
               "config": SEED_G.config.to_dict(), "metadata": {},
               "state_dict": {k: v.clone() for k, v in SEED_G.state_dict().items()}}
    for (group, index), value in sorted(edits, key=lambda e: e[0][0] == "top"):  # nested edits first
        if group == "top":
            payload[NATIVE_KEYS[index % len(NATIVE_KEYS)]] = value
        elif group == "config":
            payload["config"][CONFIG_KEYS[index % len(CONFIG_KEYS)]] = value
        else:
            payload["state_dict"][STATE_KEYS[index % len(STATE_KEYS)]] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _rosinality_with(edits: list) -> bytes:
    ckpt = rosinality_state(SEED_G)
    keys = sorted(ckpt["g_ema"])
    for (group, index), value in sorted(edits, key=lambda e: e[0][0] == "top"):  # g_ema edits first
        if group == "top":
            ckpt[["g_ema", "latent_avg", "args"][index % 3]] = value
        elif value is None:
            ckpt["g_ema"].pop(keys[index % len(keys)], None)
        else:
            ckpt["g_ema"][keys[index % len(keys)]] = value
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def _network_with(edits: list) -> bytes:
    def tamper(record: Persistent) -> None:
        kwargs = record.meta["state"]["_init_kwargs"]
        order = {"tensors": 0, "kwargs": 1, "state": 2}  # edits that need the record's structure first
        for (group, index), value in sorted(edits, key=lambda e: order[e[0][0]]):
            if group == "kwargs":
                key = KWARG_KEYS[index % len(KWARG_KEYS)]
                if "." in key:
                    outer, inner = key.split(".")
                    if isinstance(kwargs.get(outer), dict):
                        kwargs[outer][inner] = value
                else:
                    kwargs[key] = value
            elif group == "state":
                record.meta["state"][["_parameters", "_buffers", "_modules", "_init_kwargs"][index % 4]] = value
            else:
                mapping = record.meta["state"]["_modules"]["mapping"].meta["state"]
                mapping["_parameters"] = {"weight": value} if index % 2 else mapping["_parameters"]
                mapping["_buffers"]["w_avg"] = value

    path = WORK / "network-odd.pkl"
    write_network_pickle(SEED_G, path, WORK / "PWNED-module-src", tamper=tamper)
    return path.read_bytes()


def _edits(groups: list[str]) -> st.SearchStrategy:
    return st.lists(st.tuples(st.tuples(st.sampled_from(groups), st.integers(0, 1000)), odd_value), min_size=1,
                    max_size=3)


# ---------------------------------------------------------------- properties


@SETTINGS
@given(_edits(["top", "config", "state"]))
def fuzz_native_values(edits: list) -> None:
    check(_native_with(edits))


@SETTINGS
@given(_edits(["top", "g_ema"]))
def fuzz_rosinality_values(edits: list) -> None:
    check(_rosinality_with(edits))


@SETTINGS
@given(_edits(["kwargs", "state", "tensors"]))
def fuzz_network_values(edits: list) -> None:
    check(_network_with(edits))


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


ROUND2 = {  # builder, sizes n drawn from this range (None: the builder takes no size)
    "hash_collision_tuple_keys": (hostile.hash_collision_tuple_keys, (1, 6)),
    "hash_collision_int_dict": (hostile.hash_collision_int_dict, (1, 300)),
    "hash_collision_int_set": (hostile.hash_collision_int_set, (1, 300)),
    "hash_collision_frozenset": (hostile.hash_collision_frozenset, (1, 300)),
    "huge_int_shape": (hostile.huge_int_shape, (1, 4000)),
    "list_skip_scan": (hostile.list_skip_scan, (0, 60)),
    "zip_many_members": (hostile.zip_many_members, (1, 400)),
    "zip64_huge_directory": (hostile.zip64_huge_directory, None),
    "aliased_state_entries": (hostile.aliased_state_entries, (1, 32)),
    "repeated_blob_rebuild": (hostile.repeated_blob_rebuild, (1, 8)),
    "metadata_unknown_key": (hostile.metadata_unknown_key, None),
    "metadata_tensor": (hostile.metadata_tensor, None),
}


@st.composite
def round2_file(draw) -> bytes:
    name = draw(st.sampled_from(sorted(ROUND2)))
    builder, sizes = ROUND2[name]
    folder = Path(tempfile.mkdtemp(dir=WORK))
    path = builder(folder) if sizes is None else builder(folder, draw(st.integers(*sizes)))
    data = path.read_bytes()
    edits = draw(st.lists(mutation, max_size=2))
    return mutate(data, edits) if edits else data


@SETTINGS
@given(round2_file())
def fuzz_round2_classes(data: bytes) -> None:
    check(data)


_meta_value = st.one_of(odd_value, st.floats(-1e4, 1e4), st.sampled_from(["pad", "center-crop", "resize", "scalar",
                                                                          "per-dimension", "learn"]))
METADATA_FIELDS = ["recommended_config.sigma_pixel", "recommended_config.sigma_perceptual", "recommended_config.kappa",
                   "recommended_config.prior_std", "recommended_config.misfit_scale", "recommended_config.extra",
                   "recommended_config",
                   "image_preparation.method", "image_preparation.from_size", "image_preparation.fill",
                   "image_preparation", "interval_scales.multistart-fullrank", "interval_scales", "feature_network",
                   "recommended_configs.super-resolution-x2-bicubic", "recommended_configs", "note"]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(METADATA_FIELDS), _meta_value), min_size=1, max_size=4))
def fuzz_metadata_values(edits: list) -> None:
    metadata: dict = {"recommended_config": {"sigma_pixel": 0.1, "kappa": 0.25},
                      "image_preparation": {"method": "pad", "from_size": [28, 28], "fill": -1.0},
                      "interval_scales": {"multistart-fullrank": 1.5},
                      "recommended_configs": {"super-resolution-x2-bicubic": {"sigma_pixel": 0.05}}}
    for field, value in edits:
        outer, _, inner = field.partition(".")
        if inner and isinstance(metadata.get(outer), dict):
            metadata[outer][inner] = value
        elif not inner:
            metadata[outer] = value
    payload = {"format": "brgm-pyro-generator", "version": 1, "architecture": "stylegan2",
               "config": SEED_G.config.to_dict(), "metadata": metadata,
               "state_dict": {k: v.clone() for k, v in SEED_G.state_dict().items()}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    check(buf.getvalue())


FUZZERS = (fuzz_network_pickle, fuzz_project_zip, fuzz_project_zip_pickle, fuzz_opcode_stream,
           fuzz_opcodes_spliced_into_network_pickle, fuzz_native_values, fuzz_rosinality_values, fuzz_network_values,
           fuzz_round2_classes, fuzz_metadata_values)


def main() -> int:
    assert check(SEED_PICKLE) == "loaded" and check(SEED_ZIP) == "loaded", "the seed files must load"
    failed = 0
    for fuzz in FUZZERS:
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
