"""Training code: IDX reading, discriminator, the StyleGAN2 training loop and the classifier."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from brgm_pyro.domain_classifier import FashionClassifier
from brgm_pyro.training.classifier import classifier_accuracy, train_classifier
from brgm_pyro.training.data import FASHION_MNIST_DIR, load_fashion_mnist, load_training_images, read_idx
from brgm_pyro.training.discriminator import Conv2dLayer, Discriminator, MinibatchStd
from brgm_pyro.training.trainer import TrainingConfig, train_generator


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, (12,), dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (4,), dtype=np.uint8), True)
    return tmp_path


def test_read_idx_round_trip_and_errors(tmp_path: Path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr)
    write_idx(tmp_path / "b.idx.gz", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.idx.gz"), arr)
    wide = np.array([[1, -2], [300000, 4]], dtype=">i4")
    write_idx(tmp_path / "c.idx", wide)
    np.testing.assert_array_equal(read_idx(tmp_path / "c.idx"), wide)
    (tmp_path / "trunc.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "trunc.idx")
    (tmp_path / "bad.idx").write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")


def test_load_fashion_mnist_pads_and_scales(idx_folder: Path):
    x, y = load_fashion_mnist("train", idx_folder)
    raw = read_idx(idx_folder / "train-images-idx3-ubyte.gz")
    assert x.shape == (12, 1, 32, 32) and y.shape == (12,)
    np.testing.assert_allclose(x[:, 0, 2:30, 2:30].numpy(), raw / 127.5 - 1, atol=1e-6)
    assert (x[:, :, :2] == -1).all() and (x[:, :, :, 30:] == -1).all()  # black border
    assert load_fashion_mnist("test", idx_folder)[0].shape == (4, 1, 32, 32)
    assert load_training_images(idx_folder, 32, 1).shape == (12, 1, 32, 32)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation", idx_folder)
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", idx_folder / "missing")
    with pytest.raises(ValueError, match="channels=1"):
        load_training_images(idx_folder, 32, 3)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_split_sizes():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 32, 32)
    assert torch.bincount(y).tolist() == [1000] * 10


def test_discriminator_shapes_and_minibatch_std():
    D = Discriminator(16, 1, channel_base=128, channel_max=16)
    assert D(torch.randn(4, 1, 16, 16)).shape == (4, 1)
    layer = Conv2dLayer(3, 5, 3, down=2)
    assert layer(torch.randn(2, 3, 8, 8)).shape == (2, 5, 4, 4)
    assert Conv2dLayer(3, 5, 1, bias=False, down=2)(torch.randn(2, 3, 8, 8)).shape == (2, 5, 4, 4)
    x = torch.randn(4, 2, 3, 3)
    y = MinibatchStd(group_size=4)(x)
    expected = x.std(dim=0, unbiased=False).mean()
    assert y.shape == (4, 3, 3, 3)
    torch.testing.assert_close(y[:, 2], expected.expand(4, 3, 3), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(24, 1)


def tiny_training_config(out_dir: Path, iterations: int) -> TrainingConfig:
    return TrainingConfig(
        out_dir=str(out_dir), resolution=16, channels=1, z_dim=8, w_dim=8, mapping_layers=2,
        channel_base=64, channel_max=8, d_channel_base=64, d_channel_max=8, batch_size=4,
        iterations=iterations, snapshot_every=2, r1_interval=2,
    )


def test_train_generator_runs_checkpoints_and_resumes(tmp_path: Path):
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    state = train_generator(tiny_training_config(tmp_path, 3), images=images, progress=False)
    assert state.iteration == 3 and state.images_seen == 12
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "samples_000002.png").is_file()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records and all(np.isfinite([r["loss_G"], r["loss_D"]]).all() for r in records)
    ema = state.G_ema.state_dict()
    assert any(not torch.equal(v, state.G.state_dict()[k]) for k, v in ema.items())  # EMA lags G
    resumed = train_generator(tiny_training_config(tmp_path, 5), images=images, progress=False)
    assert resumed.iteration == 5 and resumed.images_seen == 20  # continued, not restarted
    with pytest.raises(ValueError, match="training images must have shape"):
        train_generator(tiny_training_config(tmp_path / "x", 1), images=torch.zeros(4, 3, 16, 16), progress=False)


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path):
    """Stop after 3 iterations (between snapshots), resume to 6: every weight, optimiser moment and
    counter equals a run that went to 6 at once (the RNG state travels in the checkpoint)."""
    torch.set_num_threads(1)
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    straight = train_generator(tiny_training_config(tmp_path / "a", 6), images=images, progress=False)
    train_generator(tiny_training_config(tmp_path / "b", 3), images=images, progress=False)
    resumed = train_generator(tiny_training_config(tmp_path / "b", 6), images=images, progress=False)
    assert resumed.iteration == straight.iteration == 6
    for name in ("G", "G_ema", "D"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f"{name}.{key}")
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for opt in ("opt_G", "opt_D"):
        for k, st in ca[opt]["state"].items():
            torch.testing.assert_close(cb[opt]["state"][k]["exp_avg_sq"], st["exp_avg_sq"], rtol=0, atol=0)
    assert [r["loss_G"] for r in cb["history"]] == [r["loss_G"] for r in ca["history"]]


def test_resume_refuses_other_run_options(tmp_path: Path):
    images = torch.rand(8, 1, 16, 16) * 2 - 1
    train_generator(tiny_training_config(tmp_path, 2), images=images, progress=False)
    other = tiny_training_config(tmp_path, 4)
    other.lr, other.ema_kimg = 0.001, 500.0
    with pytest.raises(ValueError, match=r"cannot resume.*lr: checkpoint 0.0025, now 0.001.*ema_kimg"):
        train_generator(other, images=images, progress=False)
    longer = tiny_training_config(tmp_path, 4)
    longer.max_minutes, longer.snapshot_every = 5.0, 1  # session options may change
    assert train_generator(longer, images=images, progress=False).iteration == 4


def test_classifier_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.full((256, 1, 32, 32), -1.0)
    y = torch.randint(0, 2, (256,))
    x[y == 0, :, 4:12, 4:12] = 1.0  # class 0: a square top-left
    x[y == 1, :, 20:28, 8:24] = 1.0  # class 1: a bar at the bottom
    model, report = train_classifier(x[:200], y[:200], x[200:], y[200:], epochs=8, batch_size=32, progress=False)
    assert report.test_accuracy == classifier_accuracy(model, x[200:], y[200:]) >= 0.95
    assert FashionClassifier().embedding(torch.zeros(3, 1, 32, 32)).shape == (3, 256)


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy import linalg

    from brgm_pyro.frechet import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6))
    b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) * 0.7 + 0.5
    mu_a, mu_b, ca, cb = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, torch.tensor(b)) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(a, b[:, :5])


def test_precision_recall_matches_a_kd_tree_count_and_sees_a_dropped_mode():
    from scipy.spatial import cKDTree

    from brgm_pyro.precision_recall import knn_radii, precision_recall

    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 4))
    fake = rng.standard_normal((250, 4)) * 1.3 + 0.4

    def reference(points, centres, k=3):  # independent: k-NN radii and ball membership from a KD-tree
        radii = cKDTree(centres).query(centres, k=k + 1)[0][:, -1]
        near = cKDTree(centres).query(points, k=len(centres))  # every centre, sorted by distance
        return float(np.mean([(d <= radii[i]).any() for d, i in zip(*near)]))

    precision, recall = precision_recall(torch.tensor(fake), torch.tensor(real))
    assert precision == pytest.approx(reference(fake, real), abs=1e-12)
    assert recall == pytest.approx(reference(real, fake), abs=1e-12)
    np.testing.assert_allclose(knn_radii(torch.tensor(real)).numpy(), cKDTree(real).query(real, k=4)[0][:, -1])
    assert precision_recall(torch.tensor(real), torch.tensor(real)) == (1.0, 1.0)
    # a generator that makes only one of two well-separated kinds of real image: precise, but half the recall
    two_modes = np.concatenate([rng.standard_normal((200, 4)), rng.standard_normal((200, 4)) + 50])
    one_mode = rng.standard_normal((200, 4))
    precision, recall = precision_recall(torch.tensor(one_mode), torch.tensor(two_modes))
    assert precision > 0.9 and 0.4 < recall <= 0.5
    with pytest.raises(ValueError, match="same F"):
        precision_recall(torch.tensor(fake), torch.tensor(real[:, :3]))
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(torch.tensor(real[:3]), k=3)
