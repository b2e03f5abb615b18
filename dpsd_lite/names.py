"""The names a user types: datasets, noise modes, baselines.

Kept free of heavy imports (no torch), so the command line parses and checks
its arguments, and prints ``--help``, in a fraction of a second.
"""

DATASETS = ("mnist-5k", "digits", "mnist", "fashion-mnist")
NOISE_MODES = ("none", "label", "rr", "data")
# the noise modes whose releases are gradients at the student's parameters of their moment: spent at once, so
# nothing to replay later and no labels to count (mechanisms.Mechanism.replayable, config's resolved settings)
SPENT_AT_ONCE = ("data",)
# what rr releases of each teacher answer: its top class, or its ordered top two (mechanisms.TopTwoRR)
RR_ANSWERS = ("top1", "top2")
# sweep rows that are not a noise mode of the loop, each with epsilon per private training record: DP-SGD on the
# private split (from random or public initial weights) and the teacher ensemble's noisy votes (PATE GNMax)
BASELINES = ("dpsgd", "dpsgd-public", "ensemble")
# a sweep row (and a choice of the dashboard) that is a noise mode releasing something other than its default:
# rr over the teacher's ordered top two
MODE_VARIANTS = {"rr-top2": {"noise_mode": "rr", "rr_answer": "top2"}}
# every row a sweep (dpsd-lite sweep --modes) can run
SWEEP_MODES = NOISE_MODES + tuple(MODE_VARIANTS) + BASELINES


def mode_settings(name: str) -> dict:
    """The config settings a mode name stands for (the inverse of :func:`mode_name`)."""
    return dict(MODE_VARIANTS.get(name, {"noise_mode": name, "rr_answer": "top1"}))


def mode_name(noise_mode: str, rr_answer: str = "top1") -> str:
    """What a run's noise mode is called in tables and plots: its variant's name (``rr-top2``) or the mode."""
    settings = {"noise_mode": noise_mode, "rr_answer": rr_answer}
    return next((name for name, s in MODE_VARIANTS.items() if s == settings), noise_mode)
# where the queries come from: DPSD's learned generator (the default), or the stroke renderer, a hand-written
# public prior for handwritten digits, kept as a lesson beside it (see generators.build_generator)
GENERATOR_KINDS = ("learned", "strokes")
# how tables, plot titles and reports name each generator
GENERATOR_LABELS = {"learned": "learned generator (DPSD)", "strokes": "stroke renderer (public prior)"}


def generator_label(generator: str, generic_shapes: float = 0.0, generic_shapes_end: float | None = None) -> str:
    """What a table or a plot title calls a generator (``learned`` → "learned generator (DPSD)"), naming the
    generic-shapes prior when it draws a share of the queries (``generic_shapes``, see
    :class:`dpsd_lite.generators.GenericShapes`): "learned generator (DPSD) + generic shapes (public prior, 50%
    of queries)", or with a schedule (``generic_shapes_end``) "… (public prior, 90% → 10% of queries over the
    run)"."""
    label = GENERATOR_LABELS.get(generator, generator)
    start = float(generic_shapes or 0.0)
    end = start if generic_shapes_end is None else float(generic_shapes_end)
    if end != start:
        return label + f" + generic shapes (public prior, {start:.0%} → {end:.0%} of queries over the run)"
    return label + (f" + generic shapes (public prior, {start:.0%} of queries)" if start else "")


def run_generator_label(run) -> str:
    """:func:`generator_label` of a config, of anything with a ``.config`` (a result, a loaded run) or of a sweep
    row (a dict with a ``generator`` and perhaps ``generic_shapes`` and ``generic_shapes_end`` columns)."""
    if isinstance(run, dict):
        return generator_label(str(run.get("generator", "—")), run.get("generic_shapes", 0.0),
                               run.get("generic_shapes_end"))
    config = getattr(run, "config", run)
    return generator_label(str(getattr(config, "generator", "—")), getattr(config, "generic_shapes", 0.0),
                           getattr(config, "generic_shapes_end", None))
