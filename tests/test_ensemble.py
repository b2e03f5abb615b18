"""Teacher ensemble (PATE GNMax): partitions, sensitivity, accounting against Opacus, budget, loop relay."""

import math

import pytest
import torch
import torch.nn as nn

from dpsd_lite.errors import DpsdError
from dpsd_lite.accounting import composed_epsilon
from dpsd_lite.mechanisms import EnsembleVote
from dpsd_lite.report import ensemble_privacy_report, format_ensemble_report
from dpsd_lite.ensemble import (TeacherEnsemble, assign_partitions, partition_private, train_teacher_ensemble,
                                transcribe_with_ensemble)
from dpsd_lite.noise import NoiseSource


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


class Fixed(nn.Module):
    """A stand-in teacher that answers class ``c`` to everything."""

    def __init__(self, c, k=10):
        super().__init__()
        self.c, self.k, self.w = c, k, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), self.c), self.k).float() + 0 * self.w


def test_partitions_are_disjoint_and_cover_the_private_split(digits):
    splits = partition_private(digits, 7)
    assert sum(len(p.y_private) for p in splits) == len(digits.y_private)
    owner = assign_partitions(digits.x_private, 7, digits.y_private)
    assert torch.equal(splits[2].x_private, digits.x_private[owner == 2])
    assert len({s.name for s in splits}) == 7 and len({s.content_digest for s in splits}) == 7
    with pytest.raises(DpsdError):
        partition_private(digits, len(digits.y_private) + 1)


def test_adding_or_removing_one_record_changes_exactly_one_partition(digits):
    """The add/remove claim: a record's teacher depends on the record alone, so n vs n−1 records differ in one teacher."""
    x, y, T = digits.x_private, digits.y_private, 20
    full = assign_partitions(x, T, y)
    for drop in (0, 517, len(y) - 1):
        keep = torch.arange(len(y)) != drop
        less = assign_partitions(x[keep], T, y[keep])
        assert torch.equal(less, full[keep])  # nobody else moved
        changed = [t for t in range(T) if (full == t).sum() != (less == t).sum()]
        assert changed == [int(full[drop])]
    # control: slices of a seeded random permutation (how partitions used to be cut) move almost every other
    # record when the last one is removed, since the permutation of n − 1 records is a different one
    def by_position(n):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        owner = torch.empty(n, dtype=torch.long)
        owner[perm] = torch.arange(n) % T
        return owner

    n = len(y)
    assert (by_position(n - 1) != by_position(n)[: n - 1]).float().mean() > 0.9


def test_content_partitions_have_binomial_sizes_and_use_the_label(digits):
    x, y = digits.x_private, digits.y_private
    T = 10
    sizes = torch.bincount(assign_partitions(x, T, y), minlength=T).float()
    n = len(y)
    sd = math.sqrt(n / T * (1 - 1 / T))  # binomial spread of one partition's size
    assert sizes.sum() == n and (sizes - n / T).abs().max() < 4 * sd
    assert 0.3 * sd < sizes.std() < 2.0 * sd  # hashed, not round-robin (that would give a spread of 0)
    relabelled = assign_partitions(x, T, (y + 1) % 10)
    assert (relabelled != assign_partitions(x, T, y)).float().mean() > 0.8  # the label is part of the record
    assert torch.equal(assign_partitions(x[:5], T, y[:5]), assign_partitions(x[:5].clone(), T, y[:5].clone()))


def test_one_teacher_changes_the_histogram_by_at_most_sqrt2():
    x = torch.zeros(4, 1, 8, 8)
    a = TeacherEnsemble([Fixed(1), Fixed(1), Fixed(3)], 10)
    b = TeacherEnsemble([Fixed(1), Fixed(7), Fixed(3)], 10)  # one teacher (one partition) differs
    va, vb = a(x), b(x)
    assert torch.equal(va.sum(1), torch.full((4,), 3.0))
    assert torch.allclose((va - vb).norm(dim=1), torch.full((4,), math.sqrt(2)))
    assert EnsembleVote.sensitivity == math.sqrt(2)


def test_accounting_matches_opacus_rdp_accountant_over_answered_queries():
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp
    from opacus.accountants.utils import get_noise_multiplier

    mech = EnsembleVote(epsilon=2.0, delta=1e-5, max_queries=300, num_teachers=3)
    sigma = get_noise_multiplier(target_epsilon=2.0, target_delta=1e-5, sample_rate=1.0, steps=300,
                                 accountant="rdp", epsilon_tolerance=0.005)
    assert mech.noise_multiplier == pytest.approx(sigma)
    assert mech.noise_std == pytest.approx(sigma * math.sqrt(2))
    # q = 1: Opacus's RDP of one query is the Gaussian mechanism's closed form alpha / (2 sigma^2)
    orders = [2.0, 8.0, 32.0]
    assert list(compute_rdp(q=1.0, noise_multiplier=sigma, steps=1, orders=orders)) == pytest.approx(
        [a / (2 * sigma**2) for a in orders])
    assert mech.epsilon == 0.0
    votes = torch.tensor([[0.0, 3.0, 0.0]]).repeat(128, 1)
    for _ in range(3):
        mech.release(votes)
    assert mech.answered == 300 and mech.exhausted  # 128 + 128 + 44 answered, then no more
    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, 300)]
    assert mech.epsilon == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    assert 2.0 - 0.01 <= mech.epsilon <= 2.0
    # half the budget: composed over the 150 queries actually answered, not the budget
    half = EnsembleVote(epsilon=2.0, delta=1e-5, max_queries=300)
    half.release(torch.tensor([[0.0, 3.0, 0.0]]).repeat(150, 1))
    assert half.answered == 150
    acc.history = [(half.noise_multiplier, 1.0, 150)]
    assert half.epsilon == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    assert half.epsilon < 1.5
    assert composed_epsilon(sigma, 1.0, 150, 1e-5) == pytest.approx(half.epsilon)


def test_budget_spent_means_no_answers_and_no_loss():
    mech = EnsembleVote(epsilon=5.0, delta=1e-5, max_queries=10)
    votes = torch.zeros(16, 10)
    votes[:, 4] = 50.0
    rel = mech.release(votes)
    answered = rel.extra["answered"]
    assert answered.sum() == 10 and (rel.labels[~answered] == -1).all()
    eps = mech.epsilon
    rel2 = mech.release(votes)
    assert not rel2.extra["answered"].any() and mech.epsilon == eps  # nothing more spent
    s = torch.randn(16, 10, requires_grad=True)
    loss = mech.student_loss(s, rel2)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))
    assert torch.isfinite(mech.student_loss(s, rel))


def test_report_says_record_level_with_epsilon_and_delta():
    mech = EnsembleVote(epsilon=1.0, delta=1e-5, max_queries=50, num_teachers=4)
    mech.release(torch.ones(20, 10))
    desc = mech.describe()
    unit = ensemble_privacy_report(mech)["unit_of_privacy"]  # the units of privacy live with the reports
    assert "private training record" in unit and "add/remove" in unit
    assert desc["neighbouring"] == "add/remove one private training record"
    assert desc["reproducible_noise"] is False and desc["noise_source"].startswith("secret")
    assert desc["queries_answered"] == 20 and desc["epsilon"] < desc["target_epsilon"] == 1.0
    text = format_ensemble_report(ensemble_privacy_report(mech))
    assert "per private training record" in text and "delta = 1e-05" in text


def test_vote_noise_is_secret_unless_asked_to_be_reproducible():
    votes = torch.zeros(200, 10)
    votes[:, 3] = 1.0  # one teacher voting 3: the noise decides most labels
    secret = [EnsembleVote(5.0, 1e-5, max_queries=200).release(votes).labels for _ in range(2)]
    assert not torch.equal(*secret)
    seeded = [EnsembleVote(5.0, 1e-5, max_queries=200, noise=NoiseSource.from_seed(4)).release(votes).labels
              for _ in range(2)]
    assert torch.equal(*seeded)
    mech = EnsembleVote(5.0, 1e-5, max_queries=200, noise=NoiseSource.from_seed(4))
    assert "does NOT hold" in format_ensemble_report(ensemble_privacy_report(mech))


def test_transcribe_with_ensemble_on_digits(digits, tmp_path):
    ens = train_teacher_ensemble(digits, num_teachers=4, epochs=2, batch_size=64, device="cpu",
                                 cache_dir=str(tmp_path))
    assert isinstance(ens.model, TeacherEnsemble) and ens.model.num_teachers == 4
    assert 0.3 < ens.heldout_accuracy <= 1
    again = train_teacher_ensemble(digits, num_teachers=4, epochs=2, batch_size=64, device="cpu",
                                   cache_dir=str(tmp_path))
    assert again.cached
    out = transcribe_with_ensemble(digits, ens, epsilon=8.0, delta=1e-5, query_budget=200, dataset="digits",
                                   batch_size=32, student_steps=2, device="cpu", finetune_epochs=2, seed=0)
    rep = out.privacy
    assert out.mechanism.answered == rep["queries_answered"] == 192  # 3 steps x 2 student steps x 32
    assert rep["epsilon"] <= 8.0 and rep["delta"] == 1e-5 and "record" in rep["unit_of_privacy"]
    assert out.result.privacy is rep and out.result.config.noise_mode == "ensemble"
    assert 0 <= out.student_accuracy <= 1 and out.summary()["unit"] == "record"


def test_mechanism_argument_path_once_the_loop_accepts_one(digits, monkeypatch):
    """When transcribe() takes mechanism=, the raw votes go to EnsembleVote only, and the budget stops the loop."""
    import types

    import dpsd_lite.ensemble as ensemble_mod
    from dpsd_lite.models import Student

    calls = {"release": 0}

    def fake_transcribe(config, data=None, teacher=None, callbacks=None, mechanism=None, **kw):
        # the loop's contract: teacher.model(x) -> mechanism.release -> mechanism.student_loss
        student, g = Student(data.image_shape, 10), torch.Generator().manual_seed(0)
        opt = torch.optim.Adam(student.parameters(), lr=1e-3)
        state = types.SimpleNamespace(stop=False)
        for _ in range(config.steps + 5):  # more steps than the budget allows: the callback must stop it
            for _ in range(config.student_steps):
                x = torch.randn(config.batch_size, *data.image_shape, generator=g)
                rel = mechanism.release(teacher.model(x))
                calls["release"] += 1
                loss = mechanism.student_loss(student(x), rel)
                opt.zero_grad()
                loss.backward()
                opt.step()
            callbacks["on_step_end"](state)
            if state.stop:
                break
        return types.SimpleNamespace(student=student.eval(), student_accuracy=0.0, config=config, privacy={},
                                     mechanism=None)

    monkeypatch.setattr(ensemble_mod, "transcribe", fake_transcribe)  # the loop transcribe_with_ensemble calls
    ens = TeacherEnsemble([Fixed(3), Fixed(3), Fixed(3), Fixed(8)], 10)
    from dpsd_lite.teacher import TrainedTeacher

    tt = TrainedTeacher(ens, 0.5, 0.5, 1, 0, True)
    out = transcribe_with_ensemble(digits, tt, epsilon=5.0, query_budget=100, dataset="digits", batch_size=16,
                                   student_steps=2, device="cpu", finetune_epochs=1)
    assert out.mechanism.answered == 96 == out.privacy["queries_answered"]  # 3 steps x 2 x 16
    assert calls["release"] == 6  # stopped as soon as the budget was spent
    assert out.privacy["epsilon"] <= 5.0 and out.result.config.noise_mode == "ensemble"
