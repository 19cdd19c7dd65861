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
