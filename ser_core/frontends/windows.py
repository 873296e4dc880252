"""Front ends: how a model bundle turns audio into the windows its network takes.

``cnn`` bundles take frame-feature windows (:mod:`ser_core.frontends.features`); ``whisper-head`` bundles take pooled
Whisper-encoder windows (:mod:`ser_core.frontends.embeddings`). Both cut speech with the bundle's
:class:`~ser_core.audio.segmentation.Segmentation` and give the same two views, so training, evaluation, prediction and
scoring need not know which kind they run: the windows over the speech regions of every channel of a call, and
the windows of one clip, which is segmented as a one-turn call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ser_core.audio.segmentation import Segmentation, WindowBatch, call_windows, clip_regions, scored_regions
from ser_core.frontends.embeddings import EmbeddingSpec, region_embeddings
from ser_core.frontends.features import FeatureSpec
from ser_core.models.head import speaker_centre


def clip_windows(frontend, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model windows of one mono clip at ``frontend.spec.sample_rate`` segmented as a one-turn call, and their start
    times in seconds; no windows when the clip holds no speech."""
    regions = clip_regions(samples, frontend.spec, frontend.segmentation)
    batches = list(frontend.call_windows(samples[np.newaxis], [regions]))
    if not batches:
        return np.zeros((0, *frontend.input_shape), np.float32), np.zeros(0)
    return np.concatenate([b.windows for b in batches]), np.concatenate([b.start_s for b in batches])


@dataclass(frozen=True)
class FeatureFrontend:
    """Frame features (log-mel, MFCC, ...) windowed for the CNN."""

    spec: FeatureSpec
    segmentation: Segmentation = Segmentation()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.spec.window_shape

    def utterance_windows(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model windows of one mono clip (:func:`clip_windows`) and their start times in seconds."""
        return clip_windows(self, samples)

    def call_windows(self, samples: np.ndarray, regions: list[np.ndarray]) -> Iterator[WindowBatch]:
        """Windows over the speech of each channel of ``samples`` ``(channels, frames)``."""
        return call_windows(samples, regions, self.spec, self.segmentation)

    def speaker_centre(self, windows: np.ndarray) -> np.ndarray:
        """Windows of one speaker as the model takes them (frame features need no speaker normalisation)."""
        return windows

    def check(self) -> None:
        """Nothing to verify beyond the bundle itself."""


@dataclass
class EncoderFrontend:
    """Frozen Whisper-base encoder frames pooled over 2.5 s windows; ``spec`` drives VAD and the call's frame grid."""

    spec: FeatureSpec
    embedding: EmbeddingSpec
    segmentation: Segmentation = Segmentation()
    speaker_prior: np.ndarray | None = None  # set: each speaker's (a call channel's) windows are centred on their mean
    prior_windows: int = 0
    _encoder: object = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.embedding.dim,)

    @property
    def encoder(self):
        """The encoder, loaded on first use (the weights' hash is checked then)."""
        if self._encoder is None:
            from ser_core.frontends.encoder import WhisperEncoder

            self._encoder = WhisperEncoder(layers=self.embedding.layers)
        return self._encoder

    def utterance_windows(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled windows of one mono clip (:func:`clip_windows`) and their start times in seconds."""
        return clip_windows(self, samples)

    def check(self) -> None:
        """Verify the encoder weights (joined if needed, sha256 pinned) before any work; raises EncoderUnavailable."""
        from ser_core.frontends.encoder import verified_model_dir

        verified_model_dir(self.embedding.layers)

    def speaker_centre(self, windows: np.ndarray) -> np.ndarray:
        """One speaker's pooled windows centred on their (shrunk) mean, when the bundle normalises speakers."""
        if self.speaker_prior is None:
            return windows
        return speaker_centre(windows, self.speaker_prior, self.prior_windows)

    def call_windows(self, samples: np.ndarray, regions: list[np.ndarray]) -> Iterator[WindowBatch]:
        """Pooled windows over each channel's speech; with speaker normalisation a channel's windows are gathered
        (about 4 KB each) and centred together, since a channel is one speaker."""
        for channel, (channel_samples, channel_regions) in enumerate(zip(samples, regions)):
            speech = scored_regions(channel_regions, self.spec, self.segmentation)
            batches = [WindowBatch(channel, start_s, end_s, rms_db, pooled) for start_s, end_s, rms_db, pooled in
                       region_embeddings(channel_samples, speech, self.spec.hop_length, self.encoder, self.embedding)]
            if self.speaker_prior is not None and batches:
                centred = self.speaker_centre(np.concatenate([b.windows for b in batches]))
                offsets = np.cumsum([0] + [len(b.windows) for b in batches])
                for batch, a, b in zip(batches, offsets[:-1], offsets[1:]):
                    batch.windows = centred[a:b]
            yield from batches
