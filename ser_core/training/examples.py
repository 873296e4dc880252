"""Training examples: each labelled utterance cut and pooled exactly as ``ser score`` will see it.

Copy 0 is the clip as recorded, segmented as a one-turn call (a clip's own silences are not pooled in). Copy 1
puts the clip through the call channel (:mod:`ser_core.audio.call_sim`): it becomes the customer turn of a short stereo
call, at a random level around the customer's, over a random noise floor, with the agent's turn before it
leaking into its channel, band-limited and G.711-coded; the call is segmented as scoring segments it (both
channels, so the crosstalk rule applies) and the customer channel's windows are the examples. Copies 2.. are random
augmentations (:func:`ser_core.audio.augment.augment_copy`) through the same call channel. The agent's turn is the
utterance itself played backwards: a voice of the same level and spectrum that says nothing.

Every draw is seeded by the utterance id and copy number, so reruns reproduce the same examples on any worker.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ser_core.audio.augment import AugmentPolicy, augment_copy
from ser_core.audio.call_sim import RATE, CallConditions, one_turn_call
from ser_core.audio.segmentation import call_regions

CALL_COPY = 1


def seeded_rng(key: str, copy: int, seed: int = 0) -> np.random.Generator:
    """A generator seeded by an utterance's id and a copy number."""
    digest = hashlib.sha256(f"call:{seed}:{key}:{copy}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def through_call(frontend, samples: np.ndarray, key: str, copy: int, conditions: CallConditions = CallConditions()) -> tuple[np.ndarray, np.ndarray]:
    """Model windows (and start times within the utterance) of ``samples`` as the customer turn of a simulated call."""
    if frontend.spec.sample_rate != RATE:
        raise ValueError(f"the call channel runs at {RATE} Hz, the front end at {frontend.spec.sample_rate} Hz")
    call, turn = one_turn_call(samples, samples[::-1].copy(), conditions, seeded_rng(key, copy))
    regions = call_regions(call, frontend.spec, frontend.segmentation)
    party = turn.party
    batches = list(frontend.call_windows(call[party : party + 1], regions[party : party + 1]))
    if not batches:
        return np.zeros((0, *frontend.input_shape), np.float32), np.zeros(0)
    return np.concatenate([b.windows for b in batches]), np.concatenate([b.start_s for b in batches]) - turn.start_s


def example_copies(frontend, samples: np.ndarray, key: str, augment: int, policy: AugmentPolicy = AugmentPolicy()):
    """``(copy, description, windows, start_s)`` for the clip (copy 0), the call channel (1) and ``augment``
    augmented copies through the call channel (2..); ``samples`` is mono at ``frontend.spec.sample_rate``."""
    windows, starts = frontend.utterance_windows(samples)
    yield 0, "none", windows, starts
    yield CALL_COPY, "call", *through_call(frontend, samples, key, CALL_COPY)
    for copy in range(CALL_COPY + 1, CALL_COPY + 1 + augment):
        y, description = augment_copy(samples, frontend.spec.sample_rate, policy, key, copy)
        yield copy, f"{description}|call", *through_call(frontend, y, key, copy)
