"""Baselines side by side with SAFEGEN (issue 9): each behind :class:`core.baselines.base.Baseline`.

:func:`factories` maps a ``--method`` name to its class; see each module for what it follows and
what differs from its paper. :class:`core.baselines.scorer.BaselineScorer` puts a fitted baseline
behind the same :class:`core.types.ScanScorer` protocol as SAFEGEN's scorers.
"""

from __future__ import annotations

from core.types import SAFEGEN_METHOD


def factories() -> dict:
    """``--method`` name -> the baseline's class (imported lazily: some load torch models)."""
    from core.baselines.anoddpm import AnoDDPMBaseline
    from core.baselines.dia import DIABaseline
    from core.baselines.iqm import IQMBaseline
    from core.baselines.padim import PaDiMBaseline
    from core.baselines.patchcore import PatchCoreBaseline
    from core.baselines.phanes import PHANESBaseline
    from core.baselines.spectral import LocalSpectralBaseline, SpectralBaseline

    return {"phanes": PHANESBaseline, "padim": PaDiMBaseline, "patchcore": PatchCoreBaseline,
            "mriqc_iqm": IQMBaseline, "spectral": SpectralBaseline, "spectral_local": LocalSpectralBaseline,
            "dia": DIABaseline, "anoddpm": AnoDDPMBaseline}


def method_choices() -> list[str]:
    """What ``score --method`` and the dashboard accept: SAFEGEN first, then every baseline."""
    return [SAFEGEN_METHOD, *factories()]
