"""The training loop both detectors share: batch sampling, loss logging, validation, timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from core.augment import AugmentParams, augment


@dataclass
class TrainingHistory:
    """Loss per logged step, and the wall time, for the training record."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def sample_batch(images: np.ndarray, rng: np.random.Generator, size: int, augment_images: bool,
                 params: AugmentParams | None = None) -> torch.Tensor:
    """``size`` slices drawn with replacement (freshly augmented with ``params``, the profile's ranges,
    default brain MRI's, if asked), as ``(size, 1, H, W)`` float32."""
    picks = rng.integers(0, len(images), size=size)
    params = params or AugmentParams()
    batch = [augment(images[i], rng, params) if augment_images else images[i] for i in picks]
    return torch.from_numpy(np.stack(batch)[:, None].astype(np.float32))


def run_training(
    train_step: Callable[[], float],
    *,
    steps: int,
    validate: Callable[[], float] | None = None,
    log_every: int = 50,
    desc: str = "train",
    progress: bool = True,
) -> TrainingHistory:
    """Call ``train_step()`` (one optimiser step, returning its loss) ``steps`` times.

    Every ``log_every`` steps and at the last one, the mean training loss since the last entry and,
    if given, ``validate()`` are recorded; a tqdm bar shows progress unless ``progress`` is False.
    """
    history = TrainingHistory()
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, unit="step")
    running = 0.0
    for step in bar:
        running += train_step()
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            history.steps.append(step)
            history.train_loss.append(running / n)
            running = 0.0
            if validate is not None:
                history.val_loss.append(validate())
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}")
    history.seconds = time.perf_counter() - start
    return history
