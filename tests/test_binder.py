"""Binder builds what was tested: every package pinned, CPU-only torch at the tested version, one badge setting."""

import os
import re

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _requirements():
    with open(os.path.join(ROOT, "binder", "requirements.txt")) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith(("#", "--"))]


def test_every_binder_requirement_is_pinned_and_torch_is_the_tested_cpu_build():
    reqs = _requirements()
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s=<>]+", r) for r in reqs), reqs
    pins = dict(r.split("==") for r in reqs)
    assert pins["torch"] == torch.__version__.split("+")[0] + "+cpu"
    assert not any(name.startswith(("nvidia-", "cuda-")) for name in pins)
    for needed in ("opacus", "ipywidgets", "jupyterlab", "mlxtend", "scikit-learn", "matplotlib"):
        assert needed in pins, needed


def test_readme_badge_points_at_the_one_repository_setting():
    with open(os.path.join(ROOT, "binder", "REPOSITORY")) as f:
        repo = f.read().strip()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    targets = re.findall(r"https://mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/HEAD", readme)
    assert targets and set(targets) == {repo}
