"""Baselines side by side with SAFEGEN (issue 9): each behind :class:`core.baselines.base.Baseline`.

``METHODS`` maps a ``--method`` name to a factory; see each module for what it follows and what
differs from its paper.
"""
