"""The benchmark: the sets SAFEGEN is measured on and the evaluation of a scorer on them.

``simulated`` (real slices + simulated artifacts, exact masks), ``realistic`` (real slices under normal
variation, half with one artifact), ``generated_set`` and ``turing_set`` (images from trained
generators), ``seeds`` (every set's seed); ``evaluation``, ``explainer_evaluation`` and
``head_evaluation`` score a detector / explainer on a benchmark and build the report tables.
"""
