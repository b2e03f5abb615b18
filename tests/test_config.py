"""TranscribeConfig: what ``resolved()`` fills in for settings left to the run, and the checks of ``validate()``."""

from __future__ import annotations

import pytest

from dpsd_lite.config import TranscribeConfig, resolve
from dpsd_lite.errors import DpsdError
from dpsd_lite.phases import setup


def test_rr_releases_the_top_class_unless_asked_for_the_top_two():
    assert TranscribeConfig().rr_answer == "top1"
    for generator in ("learned", "strokes"):
        for eps in (1.0, 10.0):
            cfg = resolve(TranscribeConfig(generator=generator, epsilon=eps, precision="float32").validate())
            assert cfg.rr_answer == "top1"
            assert resolve(cfg.replace(rr_answer="top2")).rr_answer == "top2"


def test_the_run_builds_the_mechanism_the_config_names(digits, digits_teacher):
    from dpsd_lite.mechanisms import SelectiveRR, TopTwoRR

    cfg = TranscribeConfig(dataset="digits", device="cpu", precision="float32")
    assert type(setup(resolve(cfg), digits, digits_teacher, "cpu").mechanism) is SelectiveRR
    two = setup(resolve(cfg.replace(rr_answer="top2", epsilon=4.0)), digits, digits_teacher, "cpu").mechanism
    assert type(two) is TopTwoRR and two.epsilon == 4.0 and two.num_classes == digits.num_classes


@pytest.mark.parametrize("bad", ["top3", "", "Top2", None, "auto"])
def test_an_unknown_rr_answer_is_a_clear_error(bad):
    with pytest.raises(DpsdError, match="unknown rr answer .*; choose one of top1, top2"):
        TranscribeConfig(rr_answer=bad).validate()


# ----------------------------------------------------------------- DFAD's discrepancy (mode none only)
@pytest.mark.parametrize("generator,mode,epsilon,weight", [("learned", "none", 10.0, 0.1), ("learned", "rr", 10.0, 0.0),
                                                          ("learned", "rr", 1.0, 0.0), ("strokes", "none", 10.0, 0.0)])
def test_discrepancy_weight_defaults_to_the_learned_generators_in_mode_none_only(generator, mode, epsilon, weight):
    """DFAD's discrepancy reads the raw teacher: only mode none may use it, so every private mode resolves to 0."""
    cfg = resolve(TranscribeConfig(dataset="digits", generator=generator, noise_mode=mode, epsilon=epsilon,
                           precision="float32"))
    assert cfg.discrepancy_weight == weight
    # a setting stays in mode none; in a private mode the run never reads the teacher, and its config says so
    assert resolve(TranscribeConfig(generator=generator, noise_mode=mode, discrepancy_weight=0.3,
                            precision="float32")).discrepancy_weight == (0.3 if mode == "none" else 0.0)


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_discrepancy_weight_must_be_non_negative(bad):
    with pytest.raises(DpsdError, match="discrepancy_weight"):
        TranscribeConfig(discrepancy_weight=bad).validate()


@pytest.mark.parametrize("name,bad", [("diversity_weight", -1.0), ("diversity_weight", float("nan")),
                                      ("replay_steps", -1)])
def test_the_generators_diversity_settings_must_be_non_negative(name, bad):
    with pytest.raises(DpsdError, match=name):
        TranscribeConfig(**{name: bad}).validate()


# ----------------------------------------------------------------- replay per generator and noise level
@pytest.mark.parametrize("generator,mode,epsilon,replay", [("learned", "rr", 10.0, 7), ("learned", "none", 10.0, 7),
                                                           ("learned", "rr", 5.0, 7), ("learned", "rr", 1.0, 3),
                                                           ("learned", "label", 2.0, 3), ("strokes", "rr", 10.0, 3)])
def test_replay_steps_follow_the_generator_and_the_noise_level(generator, mode, epsilon, replay):
    cfg = TranscribeConfig(generator=generator, noise_mode=mode, epsilon=epsilon, precision="float32")
    assert cfg.replay_steps is None and resolve(cfg.validate()).replay_steps == replay
    assert resolve(cfg.replace(replay_steps=0).validate()).replay_steps == 0  # a setting is kept


@pytest.mark.parametrize("generator", ["learned", "strokes"])
def test_mode_data_resolves_replay_and_class_balance_to_off(generator):
    """Mode data releases gradients, spent at once: the saved config must not claim replay or class balancing."""
    cfg = resolve(TranscribeConfig(dataset="mnist-5k", generator=generator, noise_mode="data", replay_steps=5,
                           class_balance=0.5, precision="float32").validate())
    assert (cfg.replay_steps, cfg.class_balance) == (0, 0.0)
    rr = resolve(TranscribeConfig(dataset="mnist-5k", generator=generator, noise_mode="rr", replay_steps=5,
                          class_balance=0.5, precision="float32").validate())
    assert (rr.replay_steps, rr.class_balance) == (5, 0.5)  # the other modes keep what is set


@pytest.mark.parametrize("mode", ["none", "label", "rr", "data"])
def test_the_config_and_the_mechanism_agree_on_which_modes_replay(mode):
    """One fact, read in two places: a mode whose mechanism cannot be replayed resolves replay and class
    balancing to off, and every other mode keeps them."""
    from dpsd_lite.mechanisms import make_mechanism
    from dpsd_lite.names import SPENT_AT_ONCE

    replayable = make_mechanism(mode, 2.0, 1e-5).replayable
    assert replayable == (mode not in SPENT_AT_ONCE) and (mode == "data") != replayable
    cfg = resolve(TranscribeConfig(dataset="mnist-5k", generator="learned", noise_mode=mode, replay_steps=5,
                           class_balance=0.5, precision="float32").validate())
    assert (cfg.replay_steps, cfg.class_balance) == ((5, 0.5) if replayable else (0, 0.0))


def test_replay_steps_must_be_a_non_negative_integer():
    with pytest.raises(DpsdError, match="replay_steps must be a non-negative integer, got -1"):
        TranscribeConfig(replay_steps=-1).validate()


# ----------------------------------------------------------------- resolved once, visibly
def test_a_config_is_resolved_once_and_the_players_refuse_an_open_one(digits, digits_teacher):
    """config.resolve decides every open default once; setup and the generator's builder take only what it
    decided (a one-line error names the fix), and resolving a resolved config changes nothing."""
    from dpsd_lite.generators import build_generator

    open_ = TranscribeConfig(dataset="digits", device="cpu")
    assert not open_.is_resolved() and open_.steps is None and open_.student_steps is None
    for build in (lambda c: setup(c, digits, digits_teacher, "cpu"), lambda c: build_generator(c, (1, 8, 8), 10)):
        with pytest.raises(DpsdError, match="resolved config .*resolve"):
            build(open_)
    done = resolve(open_)
    assert done.is_resolved() and resolve(done) == done
    assert done.precision in ("float32", "bfloat16") and done.steps and done.student_steps and done.replay_steps


@pytest.mark.parametrize("epsilon,student_steps,replay", [(10.0, 1, 7), (5.0, 1, 7), (1.0, 2, 3)])
def test_the_learned_generators_budget_per_noise_level(epsilon, student_steps, replay):
    """Nearly clean labels (ε ≥ 5): one fresh batch per iteration and seven replays; noisy ones: two fresh
    batches and three replays; clean answers (mode none): two and seven. A value set by the user is kept."""
    cfg = resolve(TranscribeConfig(dataset="mnist-5k", epsilon=epsilon, precision="float32"))
    assert (cfg.student_steps, cfg.replay_steps) == (student_steps, replay)
    none = resolve(TranscribeConfig(noise_mode="none", precision="float32"))
    assert (none.student_steps, none.replay_steps) == (2, 7)
    assert resolve(TranscribeConfig(epsilon=epsilon, student_steps=3, precision="float32")).student_steps == 3
