"""Where the privacy noise comes from: a secret source by default.

A differentially private release is safe only while its noise is unknown to
whoever reads the release. Noise drawn from a generator seeded with a number
that is published or saved (the run's ``seed``, written to ``config.json``)
can be recomputed and subtracted, and then no ε holds at all. So every
privacy noise source of the package (``label``, ``rr`` and ``data`` releases,
the ensemble's vote noise, DP-SGD's noise and its Poisson sampling) draws from
a :class:`NoiseSource`:

* :meth:`NoiseSource.secret` (the default): a ``torch.Generator`` seeded with
  64 bits from the operating system's entropy (``secrets``, i.e.
  ``os.urandom``). The seed is kept nowhere: not in the run directory, not in
  the report, not in memory beyond the generator itself.
* :meth:`NoiseSource.from_seed` (an explicit opt-in for lessons and tests,
  ``TranscribeConfig.reproducible_noise`` / ``--reproducible-noise``): the
  noise is derived from the run's seed, so a run repeats exactly, and the
  privacy report says in plain words that its ε does not hold against anyone
  who knows the seed.

The run's ``seed`` keeps controlling every other random choice (weights, the
generator's draws, which queries are asked), so two default runs with one seed
differ only through the noise.

Limits, said plainly: the generator is PyTorch's Mersenne Twister, not a
cryptographic generator, seeded secretly; Opacus's ``secure_mode`` (a
cryptographic generator and noise hardened against floating-point attacks)
needs the ``torchcsprng`` package, which is used when it is installed (see
:func:`dpsd_lite.dpsgd.train_dpsgd`).
"""

from __future__ import annotations

import hashlib
import secrets

import torch

__all__ = ["NoiseSource", "reproducible_noise_seed", "replay_label_noise", "SECRET_NOISE",
           "REPRODUCIBLE_NOISE_WARNING"]

SECRET_NOISE = ("secret: drawn from a torch.Generator seeded with 64 bits of the operating system's entropy "
                "(os.urandom); the seed is not stored anywhere, so nobody can recompute the noise")

REPRODUCIBLE_NOISE_WARNING = (
    "REPRODUCIBLE NOISE (a lesson or test setting): the privacy noise here was derived from the seed ({seed}), "
    "which is saved with a run and shown in a lesson. Anyone who knows the seed can recompute the noise and "
    "subtract it, so the epsilon reported here does NOT hold against them. Never publish a student trained this "
    "way as private."
)


def reproducible_noise_seed(seed: int) -> int:
    """The noise generator's seed derived from a run's seed (opt-in only).

    A hash, so the noise stream differs from the run's own stream seeded with
    the same number (the first draws of both would otherwise be identical).
    Public by design: this is what makes reproducible noise recomputable.
    """
    digest = hashlib.sha256(f"dpsd_lite privacy noise, seed {int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: a valid torch seed


class NoiseSource:
    """The random generator a privacy mechanism draws its noise from, and what the report says about it.

    ``generator(device)`` returns the torch.Generator for that device (made on
    first use; a secret source seeds each device's generator with fresh OS
    entropy). ``reproducible`` is True only for :meth:`from_seed`.
    """

    def __init__(self, seed: int | None = None):
        self.reproducible = seed is not None
        self.seed = int(seed) if seed is not None else None
        self._generators: dict[str, torch.Generator] = {}

    @classmethod
    def secret(cls) -> "NoiseSource":
        """Noise nobody can recompute: the default for every mechanism."""
        return cls(None)

    @classmethod
    def from_seed(cls, seed: int) -> "NoiseSource":
        """Noise derived from ``seed``: repeatable runs for lessons and tests; no ε holds against the seed's holder."""
        return cls(int(seed))

    def generator(self, device="cpu") -> torch.Generator:
        device = torch.device(device)
        key = str(device)
        if key not in self._generators:
            g = torch.Generator(device=device)
            if self.reproducible:
                g.manual_seed(reproducible_noise_seed(self.seed))
            else:
                g.manual_seed(secrets.randbits(64))
            self._generators[key] = g
        return self._generators[key]

    def describe(self) -> dict:
        """For the privacy report: where the noise came from, and a warning when it is reproducible."""
        if not self.reproducible:
            return {"noise_source": SECRET_NOISE, "reproducible_noise": False}
        return {"noise_source": f"reproducible: derived from the run's seed {self.seed} (opt-in)",
                "reproducible_noise": True, "warning": REPRODUCIBLE_NOISE_WARNING.format(seed=self.seed)}

    def __repr__(self) -> str:
        return f"NoiseSource.from_seed({self.seed})" if self.reproducible else "NoiseSource.secret()"


def replay_label_noise(seed: int, releases, noise_std: float) -> list:
    """The replay attack on ``label`` releases: recompute their noise from a run's seed and subtract it.

    What anyone holding a run directory (whose ``config.json`` names the seed)
    could do if the noise came from the seed: draw the noise again in the
    order the mechanism drew it (one B×K standard normal per release, from the
    generator :meth:`NoiseSource.from_seed` makes) and subtract it from each
    released answer. Returns, per release, the attacker's reconstruction of
    the teacher's clean (restricted, renormalised) probabilities. Against
    secret noise the reconstruction is as noisy as the release itself; with
    reproducible noise it is the teacher's exact answer, to float rounding.
    """
    g = NoiseSource.from_seed(seed).generator("cpu")
    out = []
    for rel in releases:
        noise = torch.randn(rel.values.shape, generator=g, device="cpu").to(rel.values.device)
        out.append((rel.values - noise_std * noise) * rel.mask)
    return out
