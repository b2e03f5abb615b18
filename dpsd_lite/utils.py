"""Seeding, devices, small helpers."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile

import numpy as np
import torch

from .errors import DpsdError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch from one integer; return a CPU torch.Generator for the mechanisms."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit name must be available."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DpsdError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DpsdError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DpsdError("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu")
    return dev


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device=None, batch_size: int = 500) -> float:
    """Fraction of x that model classifies as y (eval mode, batched, no autograd graph)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        with torch.no_grad():
            pred = model(x[i : i + batch_size].to(device)).argmax(1).cpu()
        correct += (pred == y[i : i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(1, len(x))


def atomic_write(path: str, write) -> None:
    """Write ``path`` so that it appears complete or not at all.

    ``write(fileobj)`` fills a temporary file in the same folder, which then
    replaces ``path`` in one rename; on any failure the temporary file is
    removed and the error propagates (``OSError`` for an unwritable folder).
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
