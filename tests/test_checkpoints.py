"""Checkpoint loading: the project's format, NVIDIA network pickles, rosinality checkpoints."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from brgm_pyro.generators import (
    CheckpointError, StyleGAN2Config, StyleGAN2Generator, UnsafeCheckpointError, load_generator, load_native,
    load_nvidia_pickle, load_rosinality, read_network_pickle, save_generator,
)

from .checkpoint_writers import Persistent, rosinality_state, write_network_pickle


def randomized_generator(resolution: int = 16, channels: int = 1, conv_clamp: float | None = None,
                         channel_base: int = 256, channel_max: int = 32) -> StyleGAN2Generator:
    """A tiny StyleGAN2 whose every tensor (biases, noise strengths, w_avg) is non-trivial."""
    torch.manual_seed(1)
    G = StyleGAN2Generator(StyleGAN2Config(
        img_resolution=resolution, img_channels=channels, z_dim=8, w_dim=8, mapping_layers=2,
        channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp))
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if not name.endswith("resample_filter"):
                t.copy_(torch.randn_like(t) * (0.3 if "noise_strength" in name or "bias" in name else 1.0))
    return G.eval()


def assert_same_generator(a: StyleGAN2Generator, b: StyleGAN2Generator) -> None:
    assert a.config == b.config
    torch.manual_seed(5)
    z = torch.randn(3, a.z_dim)
    ws = a.mapping(z)
    assert torch.equal(ws, b.mapping(z))
    for mode in ("const", "none"):
        assert torch.allclose(a.synthesis(ws, noise_mode=mode), b.synthesis(ws, noise_mode=mode), atol=1e-6)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


# ---------------------------------------------------------------- the project's format


def test_native_round_trip_with_metadata(tmp_path):
    G = randomized_generator(conv_clamp=256.0)
    path = tmp_path / "g.pt"
    save_generator(G, path, metadata={"iterations": 3, "note": "test", "fid": [1.5, None]})
    loaded = load_native(path)
    assert_same_generator(G, loaded)
    assert loaded.metadata == {"iterations": 3, "note": "test", "fid": [1.5, None]}
    assert_same_generator(G, load_generator(path, device="cpu"))


def test_native_rejects_non_plain_metadata_and_other_modules(tmp_path):
    G = randomized_generator()
    with pytest.raises(TypeError, match="metadata value at metadata.bad"):
        save_generator(G, tmp_path / "g.pt", metadata={"bad": object()})
    with pytest.raises(TypeError, match="StyleGAN2Generator"):
        save_generator(nn.Linear(2, 2), tmp_path / "g.pt")


def test_native_file_with_missing_tensor_names_it(tmp_path):
    G = randomized_generator()
    path = tmp_path / "g.pt"
    save_generator(G, path)
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["synthesis.b8.conv0.affine.bias"]
    payload["state_dict"]["synthesis.extra"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(CheckpointError,
                       match=r"missing: synthesis\.b8\.conv0\.affine\.bias.*unexpected: synthesis\.extra"):
        load_generator(path)


def test_native_wrong_version_and_shape(tmp_path):
    G = randomized_generator()
    path = tmp_path / "g.pt"
    save_generator(G, path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_native(path)
    payload["version"] = 1
    payload["config"]["w_dim"] = 4
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_native(path)


@pytest.mark.parametrize("fmt", ["native", "nvidia", "rosinality"])
def test_truncated_files_give_a_clear_error(tmp_path, fmt):
    G = randomized_generator()
    path = tmp_path / "model.bin"
    if fmt == "native":
        save_generator(G, path)
    elif fmt == "nvidia":
        write_network_pickle(G, path, tmp_path / "marker")
    else:
        torch.save(rosinality_state(G), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(path)


def test_empty_missing_and_unknown_files(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pkl")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="neither a torch zip file nor a pickle"):
        load_generator(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError, match="not a bundled name"):
        load_generator(tmp_path / "nope.pkl")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither a brgm-pyro generator nor a rosinality"):
        load_generator(tmp_path / "other.pt")


# ---------------------------------------------------------------- NVIDIA network pickles


def test_network_pickle_loads_strictly_and_never_runs_module_src(tmp_path):
    G = randomized_generator(resolution=16, channels=3, conv_clamp=256.0)
    marker = tmp_path / "module_src_ran"
    path = write_network_pickle(G, tmp_path / "network-snapshot.pkl", marker)
    assert b"torch_utils.persistence" in path.read_bytes() and b"module_src" in path.read_bytes()
    loaded = load_nvidia_pickle(path)
    assert not marker.exists()
    assert_same_generator(G, loaded)
    # content sniffing, whatever the extension
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(path.read_bytes())
    assert_same_generator(G, load_generator(renamed, device="cpu"))
    assert not marker.exists()


def test_network_pickle_records_expose_kwargs_and_the_discriminator(tmp_path):
    G = randomized_generator()
    data = read_network_pickle(write_network_pickle(G, tmp_path / "n.pkl", tmp_path / "m"))
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert data["G_ema"].class_name == "Generator"
    assert data["G_ema"].init_kwargs["mapping_kwargs"].num_layers == 2
    assert "os.system" in data["G_ema"].module_src  # kept as inert text
    assert data["D"].class_name == "Discriminator"
    assert data["training_set_kwargs"].resolution == 16
    with open(tmp_path / "n.pkl", "rb") as f:  # an open binary file works too
        assert_same_generator(G, load_nvidia_pickle(f))


class _CallsSystem:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_calling_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _CallsSystem(f"touch {marker}")}))
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os|nt)\.system.*not on brgm-pyro's allow-list"):
        load_generator(path)
    assert not marker.exists()


def test_hostile_global_hidden_inside_a_network_record_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    def tamper(record: Persistent) -> None:
        record.meta["state"]["_init_kwargs"]["payload"] = _CallsSystem(f"touch {marker}")

    path = write_network_pickle(randomized_generator(), tmp_path / "n.pkl", tmp_path / "m", tamper=tamper)
    with pytest.raises(UnsafeCheckpointError):
        load_nvidia_pickle(path)
    assert not marker.exists()


def test_other_non_allowed_globals_are_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(pickle.dumps({"G_ema": OrderedDict(f=eval)}))
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        load_generator(path)


def test_network_pickle_missing_tensor_is_named(tmp_path):
    def tamper(record: Persistent) -> None:
        synthesis = record.meta["state"]["_modules"]["synthesis"]
        conv1 = synthesis.meta["state"]["_modules"]["b8"].meta["state"]["_modules"]["conv1"]
        del conv1.meta["state"]["_parameters"]["bias"]

    path = write_network_pickle(randomized_generator(), tmp_path / "n.pkl", tmp_path / "m", tamper=tamper)
    with pytest.raises(CheckpointError, match=r"missing: synthesis\.b8\.conv1\.bias"):
        load_generator(path)


def test_stylegan3_and_conditional_pickles_are_rejected(tmp_path):
    def add_sg3_input(record: Persistent) -> None:
        synthesis = record.meta["state"]["_modules"]["synthesis"]
        synthesis.meta["state"]["_modules"]["input"] = Persistent(
            "SynthesisInput", dict(_parameters=OrderedDict(weight=nn.Parameter(torch.zeros(2))),
                                   _buffers=OrderedDict(), _modules=OrderedDict()))

    G = randomized_generator()
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_generator(write_network_pickle(G, tmp_path / "sg3.pkl", tmp_path / "m", tamper=add_sg3_input))
    with pytest.raises(CheckpointError, match="conditional"):
        load_generator(write_network_pickle(G, tmp_path / "cond.pkl", tmp_path / "m", c_dim=10))


def test_pickle_without_g_ema(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(CheckpointError, match="without 'G_ema'"):
        load_generator(path)


# ---------------------------------------------------------------- rosinality


def test_rosinality_checkpoint_loads_and_matches(tmp_path):
    G = randomized_generator(resolution=32, channels=3, channel_base=512, channel_max=32)
    path = tmp_path / "550000.pt"
    ckpt = rosinality_state(G)
    torch.save(ckpt, path)
    loaded = load_generator(path, device="cpu")
    assert_same_generator(G, loaded)
    # spot-check the renaming against the raw checkpoint
    assert torch.equal(loaded.synthesis.b8.conv0.noise_strength, ckpt["g_ema"]["convs.0.noise.weight"][0])
    assert torch.equal(loaded.synthesis.b4.const, ckpt["g_ema"]["input.input"][0])
    assert torch.equal(loaded.mapping.w_avg, ckpt["latent_avg"])
    assert torch.equal(loaded.synthesis.b32.conv1.noise_const, ckpt["g_ema"]["noises.noise_6"][0, 0])
    assert loaded.config.channel_base == 512 and loaded.config.channel_max == 32


def test_rosinality_leftover_or_missing_entries(tmp_path):
    G = randomized_generator()
    ckpt = rosinality_state(G)
    ckpt["g_ema"]["mystery.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected entries in g_ema: \\['mystery.weight'\\]"):
        load_rosinality(ckpt)
    del ckpt["g_ema"]["mystery.weight"]
    del ckpt["g_ema"]["noises.noise_2"]
    with pytest.raises(CheckpointError, match="lacks 'noises.noise_2'"):
        load_rosinality(ckpt)


# ---------------------------------------------------------------- what real pickles hold, read safely


def test_network_pickle_with_numpy_values_protocol3_sets_and_fp16_storages(tmp_path):
    """Real stylegan2-ada pickles hold numpy float64 attributes (weight_gain), stylegan3 small int
    arrays, protocol-3 ``builtins.set`` and may store some tensors as float16; all read inertly."""
    import numpy as np

    G = randomized_generator()

    def tamper(record: Persistent) -> None:
        state = record.meta["state"]
        state["weight_gain"] = np.float64(0.125)
        state["in_size"] = np.array([4, 4], dtype=np.int64)
        state["in_size_f"] = np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3))
        state["flags"] = {"a", "b"}
        state["_parameters"] = OrderedDict(extra_half=torch.ones(2, dtype=torch.float16))
        state["_non_persistent_buffers_set"] = {"extra_half"}

    path = tmp_path / "n.pkl"
    write_network_pickle(G, path, tmp_path / "m", tamper=tamper)
    proto3 = tmp_path / "p3.pkl"
    from .checkpoint_writers import _stand_in_modules, nvidia_init_kwargs, record_tree

    with _stand_in_modules():
        rec = record_tree(G, "src", nvidia_init_kwargs(G))
        tamper(rec)
        proto3.write_bytes(pickle.dumps({"G_ema": rec}, protocol=3))
    for p in (path, proto3):
        records = read_network_pickle(p)
        state = records["G_ema"].state
        assert state["weight_gain"] == 0.125 and type(state["weight_gain"]) is float
        assert state["in_size"].array.tolist() == [4, 4]
        assert state["in_size_f"].array.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        assert state["flags"] == {"a", "b"}
        assert_same_generator(G, load_generator(p, device="cpu"))


def test_state_shapes_without_building_match_the_module():
    from brgm_pyro.generators.stylegan2.generator import stylegan2_state_shapes

    for cfg in (StyleGAN2Config(img_resolution=16, img_channels=3, z_dim=8, w_dim=6, mapping_layers=3,
                                channel_base=64, channel_max=8),
                StyleGAN2Config(img_resolution=32, img_channels=1, z_dim=5, w_dim=7, mapping_layers=1,
                                channel_base=256, channel_max=64, resample_filter=(1, 2, 1))):
        module = {k: tuple(v.shape) for k, v in StyleGAN2Generator(cfg).state_dict().items()}
        assert stylegan2_state_shapes(cfg) == module


@pytest.mark.parametrize("field,value,message", [
    ("channel_max", 0, r"channel_max=0 is outside \[1, 4096\]"),
    ("channel_max", -512, r"channel_max=-512 is outside"),
    ("channel_max", 512.0, r"channel_max must be an int, got 512\.0"),
    ("w_dim", True, r"w_dim must be an int, got True"),
    ("img_resolution", 24, r"img_resolution=24 is not a power of two"),
    ("img_resolution", 4096, r"img_resolution=4096 is outside \[8, 1024\]"),
    ("img_channels", 2, r"img_channels=2; supported: \(1, 3\)"),
    ("channel_base", 8, r"channel_base=8 gives no channels at resolution 16"),
    ("w_avg_beta", float("nan"), r"w_avg_beta=nan is not a finite number"),
    ("conv_clamp", -1.0, r"conv_clamp=-1\.0 is not None or a positive"),
])
def test_native_config_fields_are_bounds_checked_before_building(tmp_path, field, value, message):
    G = randomized_generator()
    path = tmp_path / "g.pt"
    save_generator(G, path)
    payload = torch.load(path, weights_only=True)
    payload["config"][field] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


def test_native_shapes_must_match_config_before_building(tmp_path):
    G = randomized_generator()
    path = tmp_path / "g.pt"
    save_generator(G, path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["channel_max"] = 4096  # tensors of 32 channels, a wider network declared
    torch.save(payload, path)
    with pytest.raises(CheckpointError,
                       match=r"wrong shape: synthesis\.b4\.const: checkpoint \(32, 4, 4\) vs model \(64, 4, 4\)"):
        load_generator(path)


def test_non_finite_weights_are_named(tmp_path):
    G = randomized_generator()
    with torch.no_grad():
        G.synthesis.b16.torgb.bias[0] = float("-inf")
    save_generator(G, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in: synthesis\.b16\.torgb\.bias$"):
        load_generator(tmp_path / "g.pt")


def test_bit_flip_in_a_zip_member_fails_the_crc(tmp_path):
    G = randomized_generator()
    save_generator(G, tmp_path / "g.pt")
    data = bytearray((tmp_path / "g.pt").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "g.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="(CRC-32|corrupt)"):
        load_generator(tmp_path / "g.pt")


def test_truncated_zip_is_reported_as_such(tmp_path):
    save_generator(randomized_generator(), tmp_path / "g.pt")
    data = (tmp_path / "g.pt").read_bytes()
    (tmp_path / "g.pt").write_bytes(data[:-30])
    with pytest.raises(CheckpointError, match="truncated or corrupt zip archive"):
        load_generator(tmp_path / "g.pt")


def test_bundled_names_are_reserved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-mnist-32").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match=r"bundled model, which is what is loaded.*'\./fashion-mnist-32'"):
        G = load_generator("fashion-mnist-32", device="cpu")
    assert G.img_resolution == 32
    with pytest.raises(CheckpointError, match="neither a torch zip file nor a pickle"):
        load_generator("./fashion-mnist-32")
    from pathlib import Path

    with pytest.raises(CheckpointError, match="neither a torch zip file nor a pickle"):
        load_generator(Path("fashion-mnist-32"))


def test_special_files_get_their_own_message(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="named pipe"):
        load_generator(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="device file"):
        load_generator("/dev/zero")
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(CheckpointError, match="symbolic link loop"):
        load_generator(tmp_path / "a")
    (tmp_path / "dir").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_generator(tmp_path / "dir")


# ---------------------------------------------------------------- issue 23: work and memory bounds, metadata schema

import struct  # noqa: E402
import zipfile  # noqa: E402

from brgm_pyro.generators.checkpoint_files import (  # noqa: E402
    READER_BUG, check_central_directory, loading_errors, state_bytes_limit,
)
from brgm_pyro.generators.metadata import validate_metadata  # noqa: E402
from brgm_pyro.generators.safe_pickle import (  # noqa: E402
    MAX_SAME_HASH, Budget, ByteReader, KeyHashes, load_pickle,
)

from .hostile_checkpoints import Asm, colliding_tuples  # noqa: E402


def _budget() -> Budget:
    return Budget("test", max_tensor_bytes=1 << 20)


def test_key_hashes_refuse_the_ninth_colliding_key_and_accept_distinct_ones():
    keys = colliding_tuples(4)  # 16 distinct tuples, one hash
    assert len({hash(k) for k in keys}) == 1
    counter = KeyHashes(_budget())
    target: dict = {}
    counter.admit(target, keys[:MAX_SAME_HASH])
    target.update(dict.fromkeys(keys[:MAX_SAME_HASH]))
    with pytest.raises(CheckpointError, match="more than 8 keys of one dict or set share a hash"):
        counter.admit(target, keys[MAX_SAME_HASH:MAX_SAME_HASH + 1])
    plain: dict = {}
    KeyHashes(_budget()).admit(plain, [f"k{i}" for i in range(10_000)] + list(range(-5000, 5000)))
    with pytest.raises(CheckpointError, match="more than 8 keys"):
        KeyHashes(_budget()).distinct(keys)
    for bad, match in [(2**31, r"outside \[-2\*\*31"), (-2**31 - 1, "outside"), (1.5, "type float"),
                       ((1, (2,)), "type tuple")]:
        with pytest.raises(CheckpointError, match=match):
            KeyHashes(_budget()).admit({}, [bad])


def _pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


@pytest.mark.parametrize("body, match", [
    (b"\x8a\x21" + b"\x01" * 33, None),  # LONG1 of 33 bytes (264 bits incl. sign byte): allowed
    (b"\x8a\x22" + b"\x01" * 34, "int of 34 bytes"),
    (b"\x8b" + struct.pack("<I", 1000) + b"\x01" * 1000, "int of 1000 bytes"),
    (b"L" + b"9" * 83 + b"L\n", "LONG argument is not a number of at most 256 bits"),
    (b"I" + b"9" * 83 + b"\n", "INT argument"),
    (b"Np4294967296\n", r"PUT index 4294967296 lies outside \[0, 2\*\*32\)"),
    (b"Np-1\n", "PUT index -1"),
    (b"X" + struct.pack("<I", 10) + b"abc", r"truncated \(BINUNICODE of 10 bytes"),
    (b"\xff", "unknown opcode 0xff"),
])
def test_opcode_walk_bounds_ints_memo_indices_and_lengths(body, match):
    data = _pickle(body)
    if match is None:
        assert load_pickle(ByteReader(data), _budget()) == int.from_bytes(b"\x01" * 33, "little")
    else:
        with pytest.raises(CheckpointError, match=match):
            load_pickle(ByteReader(data), _budget())


def test_nested_blob_rebuilds_are_charged_each_time():
    blob = torch.arange(1000.0)._typed_storage().__reduce__()[1][0]  # one stored blob: header + 4000 bytes
    a = Asm().empty_list().mark().g("torch.storage", "_load_from_bytes").put(1).b(blob).put(0).tuple1().reduce()
    for _ in range(3):
        a.get(1).get(0).tuple1().reduce()  # the same stored blob, rebuilt again
    data = a.appends().bytes()
    total = 4 * len(blob)  # each call parses and copies the whole blob
    budget = Budget("test", max_tensor_bytes=1 << 20, max_storage_bytes=total)
    storages = load_pickle(ByteReader(data), budget)
    assert len(storages) == 4 and budget.storage_bytes == total
    assert all(torch.equal(s.data, torch.arange(1000.0)) for s in storages)
    with pytest.raises(CheckpointError, match=f"storages take {total} bytes in all, more than the {total - 1} bytes"):
        load_pickle(ByteReader(data), Budget("test", max_tensor_bytes=1 << 20, max_storage_bytes=total - 1))


def test_state_entries_are_charged_per_entry(tmp_path):
    G = randomized_generator()
    limit = sum(v.numel() * 4 for v in G.state_dict().values())
    from brgm_pyro.generators.checkpoints import charge_state

    charge_state(G.state_dict(), limit, tmp_path / "g.pt")
    aliased = dict(G.state_dict(), extra=G.state_dict()["mapping.fc0.weight"])
    with pytest.raises(CheckpointError, match=r"state entries hold \d+ bytes in all"):
        charge_state(aliased, limit, tmp_path / "g.pt")
    save_generator(G, tmp_path / "g.pt")
    size = (tmp_path / "g.pt").stat().st_size
    assert limit <= state_bytes_limit(size)  # a real file passes its own limit


def _zip_with_members(path, n: int, comment: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr(f"a/{i}", b"")
        z.comment = comment


@pytest.mark.parametrize("n, comment", [(3, b""), (5, b"a comment PK"), (65_536, b"")])  # 65536: a zip64 directory
def test_central_directory_count_agrees_with_zipfile(tmp_path, n, comment):
    path = tmp_path / "z.zip"
    _zip_with_members(path, n, comment)
    data = path.read_bytes()
    assert (b"PK\x06\x06" in data[-200:]) == (n > 65_535)
    with zipfile.ZipFile(path) as z:
        assert check_central_directory(data, "z") == len(z.infolist()) == n
    with pytest.raises(CheckpointError, match=f"more than {n - 1} members"):
        check_central_directory(data, "z", max_members=n - 1)
    with pytest.raises(CheckpointError, match="central directory of .* bytes, more than the 10-byte limit"):
        check_central_directory(data, "z", max_bytes=10)


def test_bundled_central_directory_is_counted_like_zipfile():
    from brgm_pyro.bundled import pretrained_path

    path = pretrained_path("fashion-mnist-32.pt")
    with zipfile.ZipFile(path) as z:
        assert check_central_directory(path.read_bytes(), "x") == len(z.infolist())


@pytest.mark.parametrize("error, match", [
    (MemoryError(), "ran out of memory while loading it; for this 100-byte file"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"), "ran out of memory"),
    (OSError(5, "Input/output error"), "cannot be read: Input/output error"),
    (RecursionError(), "nests too deeply"),
    (KeyError("x"), READER_BUG),
])
def test_loading_errors_name_the_file_and_the_limit(error, match):
    with pytest.raises(CheckpointError, match=match) as info:
        with loading_errors("f.pkl", 100):
            raise error
    assert "checkpoint 'f.pkl'" in str(info.value)
    assert "corrupt?" not in str(info.value)


def test_bundled_metadata_passes_the_schema_unchanged():
    G = load_generator("fashion-mnist-32", device="cpu")
    extra = {"image_preparation": {"method": "pad", "from_size": [28, 28], "fill": -1.0},
             "interval_scales": {"multistart-fullrank": 1.7, "vi-meanfield": 3.0},
             "recommended_configs": {"inpainting-mask0": {"sigma_pixel": 0.2, "sigma_perceptual": None,
                                                          "misfit_scale": 0.15},
                                     "inpainting-mask1": {"misfit_scale": "learn"},
                                     "super-resolution-x4-bicubic-antialias": {"kappa": 0.0, "misfit_scale": None}}}
    metadata = dict(G.metadata, **extra)
    assert validate_metadata(metadata, "x") == metadata
    assert validate_metadata(None, "x") == {}
    unset = {"image_preparation": {"method": "resize", "from_size": None, "fill": None}}
    assert validate_metadata(unset, "x") == unset


@pytest.mark.parametrize("metadata, match", [
    ([1, 2], "metadata must be a dict, got a list"),
    ({"recommended_config": {"sigma_pixel": 0.1, "lambda_w": 3}}, r"unknown keys \['lambda_w'\]"),
    ({"recommended_config": {"sigma_pixel": True}}, "sigma_pixel must be a number, got True"),
    ({"recommended_config": {"sigma_pixel": float("nan")}}, r"sigma_pixel=nan is not a finite number"),
    ({"recommended_config": {"sigma_perceptual": 2e3}},
     r"sigma_perceptual=2000.0 is not a finite number in \[1e-06, 1000\]"),
    ({"recommended_config": {"kappa": -0.5}}, r"kappa=-0.5 is not a finite number in \[0, 10000\]"),
    ({"recommended_config": {"prior_std": "wide"}}, "prior_std must be 'scalar' or 'per-dimension'"),
    ({"recommended_config": [0.1]}, "recommended_config must be a dict, got a list"),
    ({"recommended_config": {"misfit_scale": "guess"}}, "misfit_scale must be a number, got"),
    ({"recommended_config": {"misfit_scale": 0.0}}, r"misfit_scale=0.0 is not a finite number in \[1e-06, 1000\]"),
    ({"recommended_configs": [0.1]}, "recommended_configs must be a dict, got a list"),
    ({"recommended_configs": {"inpainting-mask0": {"sigma_pixel": -1.0}}},
     r"recommended_configs\['inpainting-mask0'\].sigma_pixel=-1.0 is not a finite number"),
    ({"recommended_configs": {"inpainting-mask0": {"lambda_w": 3}}}, r"unknown keys \['lambda_w'\]"),
    ({"recommended_configs": {"v" * 201: {}}}, "recommended_configs key must be a string of at most 200"),
    ({"feature_network": "x" * 201}, "feature_network must be a string of at most 200"),
    ({"image_preparation": {"method": "stretch"}}, r"method must be one of \['pad', 'center-crop', 'resize'\]"),
    ({"image_preparation": {"method": "pad", "from_size": [28, 5000]}}, r"from_size must be an int in \[1, 4096\]"),
    ({"image_preparation": {"method": "pad", "from_size": [28]}}, r"from_size must be \[height, width\]"),
    ({"image_preparation": {"method": "pad", "fill": 1.5}}, r"fill=1.5 is not a finite number in \[-1, 1\]"),
    ({"image_preparation": {"method": "pad", "colour": 1}}, r"unknown keys \['colour'\]"),
    ({"interval_scales": {"vi": 0.0}}, r"interval_scales\['vi'\]=0.0 is not a finite number in \(0, 100\]"),
    ({"interval_scales": {"vi": 101}}, "is not a finite number in"),
    ({"interval_scales": {"v" * 201: 1.0}}, "interval_scales key must be a string of at most 200"),
    ({"note": torch.zeros(2)}, "metadata.note is a Tensor; metadata must be plain data"),
    ({"note": {1: 2}}, "metadata.note has a key that is 1, not a string"),
    ({"iterations": -1}, r"iterations must be an int in \[0, "),
])
def test_metadata_schema_refuses_values_outside_it(metadata, match):
    with pytest.raises(CheckpointError, match=match) as info:
        validate_metadata(metadata, "g.pt")
    assert "checkpoint 'g.pt'" in str(info.value)


def test_metadata_containers_are_bounded_even_when_aliased():
    inner: list = [0]
    for _ in range(30):  # 2**30 values reached through 30 shared lists
        inner = [inner, inner]
    with pytest.raises(CheckpointError, match="more than 100000 values|nests deeper than 16"):
        validate_metadata({"note": inner}, "g.pt")
    unknown = {"note": "kept", "fid": [1.5, None], "nested": {"a": [1, {"b": "c"}]}}
    assert validate_metadata(unknown, "g.pt") == unknown  # unknown keys: kept as plain data, never used


def test_default_config_refuses_bad_in_memory_metadata():
    from brgm_pyro.corruptions import SuperResolution
    from brgm_pyro.models import default_config

    G = load_generator("fashion-mnist-32", device="cpu")
    assert default_config(G, SuperResolution(2)).sigma_pixel == G.metadata["recommended_config"]["sigma_pixel"]
    for bad, match in [({"lambda_w": 3}, r"unknown keys \['lambda_w'\]"),
                       ({"sigma_pixel": "0.1"}, "not a valid BRGMConfig")]:
        G.metadata = {"recommended_config": bad}
        with pytest.raises(ValueError, match=match):
            default_config(G, SuperResolution(2))
    G.metadata = {"recommended_config": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"metadata\['recommended_config'\] must be a dict, got Tensor"):
        default_config(G, SuperResolution(2))
    G.metadata = {"recommended_configs": [0.05]}
    with pytest.raises(ValueError, match=r"metadata\['recommended_configs'\] must be a dict"):
        default_config(G, SuperResolution(2))
    G.metadata = {}  # no recommendation: the released balance
    assert default_config(G, SuperResolution(2)).prior_std == "scalar"


def test_files_are_mapped_and_read_only_where_mapping_is_unsupported(monkeypatch, tmp_path):
    import errno
    import mmap

    G = randomized_generator()
    save_generator(G, tmp_path / "g.pt")
    assert_same_generator(G, load_generator(tmp_path / "g.pt", device="cpu"))  # mapped

    def refuse(code):
        def fake_mmap(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return fake_mmap

    monkeypatch.setattr(mmap, "mmap", refuse(errno.ENODEV))  # no mmap on this file system: read instead
    assert_same_generator(G, load_generator(tmp_path / "g.pt", device="cpu"))
    monkeypatch.setattr(mmap, "mmap", refuse(errno.ENOMEM))  # e.g. an address-space limit: a clean error
    with pytest.raises(CheckpointError, match=r"g.pt' \(\d+ bytes\) cannot be mapped into memory"):
        load_generator(tmp_path / "g.pt", device="cpu")


def test_module_limits_are_read_at_load_time(monkeypatch):
    from pathlib import Path

    from brgm_pyro.bundled import pretrained_path
    from brgm_pyro.generators import checkpoint_files, safe_pickle

    monkeypatch.setattr(checkpoint_files, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="more than the 1000-byte limit for checkpoints"):
        load_generator(Path(pretrained_path("fashion-mnist-32.pt")), device="cpu")
    monkeypatch.undo()
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_OPS", 100)
    with pytest.raises(CheckpointError, match="more than 100 opcodes"):
        load_generator(Path(pretrained_path("fashion-mnist-32.pt")), device="cpu")
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint_files, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(CheckpointError, match="more than 3 members"):
        load_generator(Path(pretrained_path("fashion-mnist-32.pt")), device="cpu")


def test_text_ints_up_to_the_bit_limit_are_read_and_bad_paths_are_checkpoint_errors(tmp_path):
    assert load_pickle(ByteReader(_pickle(b"L" + b"9" * 78 + b"L\n")), _budget()) == 10**78 - 1
    assert load_pickle(ByteReader(_pickle(b"I-" + b"9" * 78 + b"\n")), _budget()) == -(10**78 - 1)
    with pytest.raises(CheckpointError, match="not a usable path"):
        load_generator(str(tmp_path / "a\0b.pt"), device="cpu")
    with pytest.raises(CheckpointError, match="File name too long"):
        load_generator(tmp_path / ("x" * 5000), device="cpu")
