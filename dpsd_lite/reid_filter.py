"""The re-identification filter of Privacy Distillation (Fernandez et al. 2023).

Before anything is trained on, or released from, a synthetic set, drop the
samples that sit too close to a real private image:

1. embed images with a feature extractor (default: the teacher's penultimate
   layer, :meth:`~dpsd_lite.models.Teacher.embed`; ``"pixels"`` uses raw
   pixels), subtract the private embeddings' mean (the teacher's features
   come after a ReLU, all non-negative, so uncentred cosines bunch near 1)
   and L2-normalise, so a dot product is a cosine similarity;
2. for each synthetic sample find its nearest private image;
3. calibrate a threshold on real data the model never trained on: the
   ``percentile`` (default 95th) of the similarities between each held-out
   image and its nearest private image. A fresh real image is that close to
   the private set only 5% of the time;
4. drop every synthetic sample whose nearest-private similarity is above it.

**This filter is not a DP mechanism.** It reads the private images (and the
held-out ones), and which samples it drops, how many, and the threshold itself
depend on them. It carries no ε: it reduces memorisation / re-identification
risk empirically, it proves nothing. The run's ε covers the *unfiltered*
synthetic set (per teacher answer, see the run's privacy report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DpsdError
from .plots import plot_histograms

NOT_DP_NOTE = (
    "This filter reads the private training images (and held-out real images to calibrate its threshold). "
    "It is NOT a differentially private mechanism and carries no epsilon: which samples it drops, how many, "
    "and the threshold itself all depend on private data. It reduces memorisation and re-identification risk "
    "empirically (near-copies of private images in the embedding are removed); it proves nothing. The run's "
    "epsilon covers the unfiltered synthetic set only."
)


def check_percentile(percentile) -> float:
    """The threshold's percentile, in (0, 100]."""
    percentile = float(percentile)
    if not 0 < percentile <= 100:
        raise DpsdError(f"the filter's percentile must lie in (0, 100], got {percentile:g}")
    return percentile


def _resolve_embedder(embedder):
    """(images → features, its name, the nn.Module behind it or None).

    Accepts a TrainedTeacher or a model with ``.embed``, another callable, or ``"pixels"``.
    """
    if isinstance(embedder, str):
        if embedder == "pixels":
            return (lambda x: x.flatten(1)), "raw pixels", None
        raise DpsdError(f"unknown embedder {embedder!r}; pass 'pixels', a model with .embed, or a callable")
    model = getattr(embedder, "model", embedder)  # TrainedTeacher → its Teacher
    module = model if isinstance(model, torch.nn.Module) else None
    if hasattr(model, "embed"):
        return model.embed, f"{type(model).__name__}.embed (penultimate features)", module
    if callable(model):
        return model, getattr(model, "__name__", type(model).__name__), module
    raise DpsdError("the embedder must be 'pixels', a model with .embed(x), or a callable images → features")


@torch.no_grad()
def embed_images(images: torch.Tensor, embedder, batch_size: int = 512, device=None) -> torch.Tensor:
    """N×D features (float32, CPU) of N×C×H×W images; modules are run in eval mode."""
    fn, _, module = _resolve_embedder(embedder)
    was_training = module is not None and module.training
    if module is not None:
        module.eval()  # BatchNorm running statistics, no dropout
        if device is None:
            device = next(module.parameters()).device
    device = device or "cpu"
    try:
        out = [fn(images[i : i + batch_size].to(device)).float().flatten(1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        if was_training:
            module.train()
    return torch.cat(out)


def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor, chunk: int = 2048):
    """For each normalised query row: (cosine similarity to its nearest reference row, that row's index)."""
    sims, idx = [], []
    for i in range(0, len(queries), chunk):
        s = queries[i : i + chunk] @ references.T
        best = s.max(dim=1)
        sims.append(best.values)
        idx.append(best.indices)
    return torch.cat(sims), torch.cat(idx)


@dataclass
class ReidFilterResult:
    """The filter's verdict on N synthetic samples and the evidence for it."""

    keep: torch.Tensor  # N bool: True = kept (similarity ≤ threshold)
    similarity: torch.Tensor  # N: cosine similarity to the nearest private image
    nearest: torch.Tensor  # N: index of that private image in x_private
    threshold: float
    percentile: float
    heldout_similarity: torch.Tensor  # held-out → nearest private similarities (the calibration sample)
    embedder: str

    @property
    def n_total(self) -> int:
        return int(len(self.keep))

    @property
    def n_dropped(self) -> int:
        return int((~self.keep).sum())

    @property
    def n_kept(self) -> int:
        return self.n_total - self.n_dropped

    @property
    def fraction_dropped(self) -> float:
        return self.n_dropped / self.n_total if self.n_total else math.nan

    def closest(self, k: int = 8) -> torch.Tensor:
        """Indices of the k synthetic samples most similar to a private image, closest first."""
        return torch.argsort(self.similarity, descending=True)[:k]

    def summary(self) -> dict:
        """JSON-ready counts and threshold, and what the filter is (and is not). No private images, no indices."""
        return {
            "filter": "re-identification filter (Privacy Distillation): drop synthetic samples whose nearest "
                      "private image is more similar than the threshold",
            "embedder": self.embedder,
            "similarity": "cosine",
            "threshold": self.threshold,
            "calibration": f"{self.percentile:g}th percentile of held-out-to-nearest-private similarity "
                           f"({len(self.heldout_similarity)} held-out images)",
            "n_synthetic": self.n_total,
            "n_dropped": self.n_dropped,
            "n_kept": self.n_kept,
            "fraction_dropped": self.fraction_dropped,
            "reads_private_data": True,
            "differentially_private": False,
            "epsilon": None,
            "note": NOT_DP_NOTE,
        }

    def audit(self, k: int = 20) -> dict:
        """:meth:`summary` plus the closest pairs (synthetic index, private index, similarity): internal only."""
        top = self.closest(k).tolist()
        return {**self.summary(),
                "closest_pairs": [{"synthetic": i, "private": int(self.nearest[i]),
                                   "similarity": float(self.similarity[i]), "dropped": not bool(self.keep[i])}
                                  for i in top],
                "heldout_similarity_quantiles": {
                    str(q): float(torch.quantile(self.heldout_similarity, q / 100)) for q in (5, 50, 95, 99)},
                "synthetic_similarity_quantiles": {
                    str(q): float(torch.quantile(self.similarity, q / 100)) for q in (5, 50, 95, 99)}}

    def format(self) -> str:
        return "\n".join([
            f"re-identification filter ({self.embedder}, cosine similarity)",
            f"threshold = {self.threshold:.4f} ({self.percentile:g}th percentile of held-out → nearest private)",
            f"dropped {self.n_dropped} of {self.n_total} synthetic samples ({self.fraction_dropped:.1%}), "
            f"kept {self.n_kept}",
            f"NOT differentially private: {NOT_DP_NOTE}",
        ])


def reid_filter(synthetic_images: torch.Tensor, x_private: torch.Tensor, x_heldout: torch.Tensor, embedder,
                percentile: float = 95.0, center: bool = True, batch_size: int = 512,
                device=None) -> ReidFilterResult:
    """Run the filter: embed, find each synthetic sample's nearest private image, calibrate, decide.

    ``embedder``: a :class:`~dpsd_lite.teacher.TrainedTeacher` or model with
    ``.embed`` (the teacher's penultimate features), a callable, or
    ``"pixels"``. ``center`` subtracts the mean private embedding before the
    cosine. Reads ``x_private`` and ``x_heldout``: not DP (see module doc).
    """
    percentile = check_percentile(percentile)
    if len(x_private) == 0 or len(x_heldout) == 0:
        raise DpsdError("the filter needs private images and held-out images to calibrate on")
    name = _resolve_embedder(embedder)[1]
    private = embed_images(x_private, embedder, batch_size, device)
    origin = private.mean(0) if center else torch.zeros(private.shape[1])

    def unit(features):
        return F.normalize(features - origin, dim=1)

    private = unit(private)
    heldout_sim, _ = nearest_neighbours(unit(embed_images(x_heldout, embedder, batch_size, device)), private)
    threshold = float(torch.quantile(heldout_sim, percentile / 100))
    sim, nearest = nearest_neighbours(unit(embed_images(synthetic_images, embedder, batch_size, device)), private)
    name += ", centred on the private mean" if center else ""
    return ReidFilterResult(sim <= threshold, sim, nearest, threshold, percentile, heldout_sim, name)


# --------------------------------------------------------------------------- figures


def _show(ax, img):
    img = ((img + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def closest_pairs_figure(result: ReidFilterResult, synthetic_images: torch.Tensor, x_private: torch.Tensor,
                         k: int = 8, labels=None, class_names=None):
    """The k closest synthetic/private pairs side by side: synthetic on top, its nearest private image below.

    Shows private images: for the data owner's eyes, not for release.
    """
    from matplotlib.figure import Figure

    top = result.closest(k).tolist()
    fig = Figure(figsize=(1.3 * max(len(top), 2), 3.2), layout="constrained")
    axes = fig.subplots(2, max(len(top), 1), squeeze=False)
    for j, i in enumerate(top):
        _show(axes[0, j], synthetic_images[i])
        _show(axes[1, j], x_private[int(result.nearest[i])])
        dropped = not bool(result.keep[i])
        name = f" '{class_names[int(labels[i])]}'" if labels is not None and class_names is not None else ""
        axes[0, j].set_title(f"#{i}{name}\ncos {float(result.similarity[i]):.3f}", fontsize=8,
                             color="red" if dropped else "black")
        axes[1, j].set_xlabel("dropped" if dropped else "kept", fontsize=8, color="red" if dropped else "black")
    axes[0, 0].set_ylabel("synthetic", fontsize=9)
    axes[1, 0].set_ylabel("nearest private", fontsize=9)
    fig.suptitle(f"Closest synthetic–private pairs ({result.embedder}); threshold cos {result.threshold:.3f} "
                 f"— PRIVATE IMAGES: internal only", fontsize=9)
    return fig


def similarity_histogram(result: ReidFilterResult, bins: int = 40):
    """Nearest-private cosine similarity: synthetic samples vs held-out real images, with the threshold."""
    lo = float(min(result.similarity.min(), result.heldout_similarity.min()))
    fig = plot_histograms({"held-out real → private": result.heldout_similarity,
                           "synthetic → private": result.similarity},
                          xlabel="cosine similarity to the nearest private image", ylabel="share of images (%)",
                          bins=bins, value_range=(lo, 1.0),
                          title=f"dropped {result.n_dropped} of {result.n_total} synthetic samples "
                                f"({result.fraction_dropped:.1%})")
    ax = fig.axes[0]
    ax.axvline(result.threshold, color="red", linestyle="--",
               label=f"threshold ({result.percentile:g}th pct) = {result.threshold:.3f}")
    ax.legend(fontsize="small")
    return fig
