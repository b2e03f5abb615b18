"""The names a user types: datasets, noise modes, baselines.

Kept free of heavy imports (no torch), so the command line parses and checks
its arguments, and prints ``--help``, in a fraction of a second.
"""

DATASETS = ("mnist-5k", "digits", "mnist", "fashion-mnist")
NOISE_MODES = ("none", "label", "rr", "data")
# what rr releases of each teacher answer: its top class, or its ordered top two (mechanisms.TopTwoRR)
RR_ANSWERS = ("top1", "top2")
# sweep rows that are not a noise mode of the loop, each with epsilon per private training record: DP-SGD on the
# private split (from random or public initial weights) and the teacher ensemble's noisy votes (PATE GNMax)
BASELINES = ("dpsgd", "dpsgd-public", "ensemble")
GENERATOR_KINDS = ("auto", "learned", "strokes")  # see generators.build_generator
GENERATOR_OBJECTIVES = ("class", "boundary")
