"""Seeding, devices, small helpers."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile

import numpy as np
import torch

from .errors import DpsdError
from .names import run_generator_label


def default_cache_dir() -> str:
    """Where teachers and parsed data are cached: ``$DPSD_CACHE_DIR``, else ``~/.cache/dpsd_lite``."""
    return os.environ.get("DPSD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "dpsd_lite")


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


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (a CPU with AMX or AVX-512 BF16 units).

    Elsewhere bfloat16 is emulated on CPU and slower than float32; GPUs are not measured, so they say no."""
    if torch.device(device).type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel at once.

    The loop allocates and frees the same few blocks of 5–30 MB (a batch's
    activations) hundreds of times a second. By default glibc serves such
    blocks with mmap and returns them with munmap, so every batch pays for
    fresh zeroed pages: measured on 2 cores, the teacher's forward pass on
    256 queries took 70 ms that way and 36 ms with blocks up to 32 MB kept
    in the heap (and heap tops up to 256 MB kept). Peak memory is the same;
    memory freed after a run may be returned to the system later. A no-op
    off glibc (macOS, Windows, musl); ``DPSD_TUNE_MALLOC=0`` turns it off.
    Returns whether the settings were applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("DPSD_TUNE_MALLOC", "1") == "0":
        return _ALLOCATOR_TUNED
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
        _ALLOCATOR_TUNED = bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))
    except (OSError, AttributeError):  # not glibc
        _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


@contextlib.contextmanager
def flush_denormals():
    """Treat denormal floats as zero while the block runs (restored to PyTorch's default after).

    On x86 CPUs arithmetic on denormals (|x| < 1.2e-38) is 10–100 times
    slower than on normal floats, and small networks trained on sparse
    images produce them (e.g. a batched matrix product of Gaussian pen
    profiles: 15 ms with denormals, 0.5 ms flushed). Results differ from
    exact IEEE arithmetic only below 1.2e-38.
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store a conv net's weights channels-last (NHWC), in place; returns the model.

    On CPUs this takes oneDNN's fast path: the student's and the teacher's
    first convolution and pooling run several times faster than in PyTorch's
    default NCHW layout (measured: a 1→32-channel 3×3 convolution on 256
    MNIST images, 19 ms → 2 ms). GPUs (cuDNN) are fine with it too. Inputs
    need no change: a convolution converts them.

    Not for a model handed to Opacus: with channels-last weights Opacus 1.6
    computes wrong per-sample gradients for the student's second convolution
    (tests/test_dpsgd.py guards this), so DP-SGD keeps the default layout.
    """
    return model.to(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device=None, batch_size: int = 128) -> float:
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


class ProgressBar:
    """A tqdm progress bar driven by the loop's ``on_step_end`` callback: ``transcribe(..., callbacks=bar.callbacks)``.

    One bar per run (a sweep's next run, whose step count starts again,
    gets a fresh bar), described by the run's mode, ε and generator, with the
    latest held-out accuracy and the number of teacher queries. ``tqdm.auto``:
    a widget in Jupyter, text on a terminal (``file``, default stderr).
    ``close()`` ends the last bar.

    A run's first step ends only after it has loaded its teacher (from the
    disk cache, or by training it once) and built its players, so a bar made
    at the first step would leave a notebook cell blank until then. With
    ``start`` (the default in Jupyter) the bar is shown at once, named
    ``desc`` (or "transcription") and saying what the run is doing, and takes
    the run's step count and name at its first step. On a terminal the default
    waits for the first step, so it never interleaves with the teacher's own
    training bar.
    """

    STARTING = "starting… (loading the teacher: from the disk cache, or trained once)"

    def __init__(self, desc: str | None = None, file=None, leave: bool = True, start: bool | None = None):
        self.desc, self.file, self.leave = desc, file, leave
        self.bar = None
        self._waiting = False  # the bar shown before its run's first step, without a step count yet
        self.callbacks = {"on_step_end": self.update}
        if start if start is not None else _in_notebook():
            self.start()

    def _describe(self, state) -> str:
        if self.desc:
            return self.desc
        cfg = state.config
        mode = cfg.noise_mode if cfg.noise_mode == "none" else f"{cfg.noise_mode}, ε={cfg.epsilon:g}"
        frozen = ", frozen" if getattr(cfg, "freeze_generator", False) else ""
        return f"{mode}, {run_generator_label(cfg)}{frozen}"

    def _new_bar(self, **kwargs):
        import sys

        from tqdm.auto import tqdm

        return tqdm(unit="step", file=self.file or sys.stderr, leave=self.leave, **kwargs)

    def start(self, text: str | None = None) -> None:
        """Show a bar now, before the run's first step: its name and ``text`` (default :attr:`STARTING`)."""
        self.close()
        self.bar = self._new_bar(total=None, desc=self.desc or "transcription")
        self.bar.set_postfix_str(text or self.STARTING)
        self._waiting = True

    def update(self, state) -> None:
        if self.bar is not None and not self._waiting and state.step < self.bar.n:  # a new run
            self.close()
        if self.bar is None:
            self.bar = self._new_bar(total=state.total_steps, desc=self._describe(state))
        elif self._waiting:  # the bar shown at once: now the run is known
            self.bar.reset(total=state.total_steps)
            self.bar.set_description(self._describe(state), refresh=False)
            self._waiting = False
        self.bar.update(state.step - self.bar.n)
        acc = state.student_accuracy
        self.bar.set_postfix(acc="n/a" if acc != acc else f"{100 * acc:.1f}%", queries=f"{state.queries:,}",
                             refresh=False)
        if state.step >= state.total_steps:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._waiting = False


def _in_notebook() -> bool:
    """Whether tqdm.auto draws its bars as Jupyter widgets here (an IPython kernel with ipywidgets)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
