"""Model kinds: what a bundle's ``model_kind`` names, each one registered :class:`ModelKind` (as lhotse registers
feature extractors).

A kind says which files its bundle holds besides ``bundle.json``, how to load its network from them, which front
end turns audio into its windows, and how its model card is written. :mod:`ser_core.models.bundle` looks kinds up here
and imports no model module itself; a new kind is one :func:`register_kind` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ser_core.audio.segmentation import Segmentation
from ser_core.errors import BundleError
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend, FeatureFrontend
from ser_core.models import whisper_head as whisper_model
from ser_core.models.cards import cnn_card, whisper_head_card
from ser_core.models.files import MODEL_FILE, load_keras

Frontend = FeatureFrontend | EncoderFrontend


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: its name, bundle files, loader, front end and card writer."""

    name: str
    files: tuple[str, ...]
    load: Callable[[dict[str, bytes]], object]
    """The network from the bundle's files (checked against the manifest first)."""
    frontend: Callable[[dict, FeatureSpec, Segmentation], Frontend]
    """The front end from ``bundle.json``, its feature spec and its segmentation."""
    card: Callable[[dict], str]
    """``MODEL_CARD.md`` from the bundle's ``bundle.json`` content."""


KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    """Make ``kind`` loadable by its name; a name is registered once."""
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ModelKind:
    """The registered kind ``name``; :class:`BundleError` for a name this ser does not know."""
    if name not in KINDS:
        raise BundleError(f"unknown model kind {name!r}; this ser knows {', '.join(KINDS)}")
    return KINDS[name]


def _feature_frontend(_info: dict, spec: FeatureSpec, segmentation: Segmentation) -> FeatureFrontend:
    return FeatureFrontend(spec, segmentation)


CNN = register_kind(ModelKind("cnn", (MODEL_FILE,), load_keras, _feature_frontend, cnn_card))
WHISPER_HEAD = register_kind(ModelKind(whisper_model.WHISPER_KIND, (MODEL_FILE,), load_keras, whisper_model.frontend,
                                       whisper_head_card))
