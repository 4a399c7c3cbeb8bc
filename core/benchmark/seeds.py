"""The seeds of the benchmark sets the README reports, in one place; each used for nothing else.

The Makefile's ``benchmark``, ``realistic-benchmark`` and ``generated-set`` targets pass the same
numbers on the command line (``--seed``); the commands' defaults and ``train-profile`` read them here.
"""

SIMULATED_VAL_SEED = 101
"""``make-benchmark --split val``: the simulated-artifact set that picks alpha."""

SIMULATED_TEST_SEED = 202
"""``make-benchmark --split test``: the simulated-artifact set ``evaluate`` reports."""

TURING_SEED = 303
"""``make-turing-set``: the real and SDEdit images of the visual Turing test."""

GENERATED_SET_SEED = 404
"""``make-generated-set``: the demo's generated slices."""

REALISTIC_SEED = 505
"""``make-realistic-benchmark``: the realistic test benchmark (its pixel-size variant uses 515)."""

UNSEEN_VOLUMES_SEED_OFFSET = 101
"""``make-realistic-benchmark`` draws its clean held-out volumes with ``--seed`` plus this."""

UNSEEN_VOLUMES_SEED = REALISTIC_SEED + UNSEEN_VOLUMES_SEED_OFFSET
"""606: the realistic benchmark's clean held-out volumes."""
