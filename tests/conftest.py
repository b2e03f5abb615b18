"""Shared fixtures: a private cache dir for the whole session, small data and a small teacher."""

import os

import pytest
import torch

torch.set_num_threads(1)  # small models: one thread is fastest and avoids oversubscription


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Every test writes teacher caches into a temporary folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("dpsd_cache")
    old = os.environ.get("DPSD_CACHE_DIR")
    os.environ["DPSD_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DPSD_CACHE_DIR", None)
    else:
        os.environ["DPSD_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def digits():
    from dpsd_lite.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_teacher(digits, _session_cache):
    """A teacher on scikit-learn digits (a few seconds), cached for the session."""
    from dpsd_lite.teacher import get_teacher

    return get_teacher(digits, epochs=3, seed=0, device="cpu", cache_dir=str(_session_cache))


@pytest.fixture(scope="session")
def tiny_run(digits, digits_teacher):
    """A very short rr transcription on digits (seconds), shared by tests that need a result."""
    from dpsd_lite.transcribe import transcribe

    return transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                      steps=12, batch_size=64, eval_every=6, teacher_epochs=3, device="cpu", seed=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: as fast, and far faster when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
