"""Scoring of one call in one process: a recording in, typed pieces out.

:class:`CallScoring` reads a recording block by block, finds its speech with the bundle's segmentation, and runs
the model over the windows in batches, yielding each batch as a :class:`ScoredBatch` as soon as it is scored (a long
call never sits in memory whole) and finally one :class:`CallEnd` with the call's facts. Any failure of the file
(unreadable, too long, stalled, non-finite) ends the call with an ``error`` status instead of raising: a bad file
never stops a batch job. :class:`~ser_core.scoring.collector.CallCollector` puts the pieces back together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ser_core.audio.decoding import AudioDecodeError, AudioReader, SpooledAudio
from ser_core.audio.segmentation import NonFiniteError, WindowBatch, prepare_call
from ser_core.errors import Refused
from ser_core.models.bundle import load_bundle_files, read_bundle_files
from ser_core.scoring.calls import CallResult, ScoringConfig, Windows, in_emotion_order, label_columns
from ser_core.text import brief

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredBatch:
    """Consecutive scored windows of one call, the first of them window number ``first`` of the call."""

    call_id: str
    first: int
    windows: Windows


@dataclass(frozen=True)
class CallEnd:
    """The last piece of a call: its facts (``result``, without windows) and how many windows were scored."""

    result: CallResult
    windows: int


class CallScoring:
    """Scores calls with one loaded bundle (load it once per process)."""

    def __init__(self, bundle, scoring: ScoringConfig, batch_size: int):
        self.bundle, self.scoring, self.batch_size = bundle, scoring, batch_size
        self.columns = label_columns(bundle.labels)

    def score(self, call_id: str, uri: str) -> Iterator[ScoredBatch | CallEnd]:
        """The call's scored batches as they are ready, then its :class:`CallEnd`."""
        spec = self.bundle.spec
        frame_s = spec.hop_length / spec.sample_rate
        result = CallResult(call_id, uri, "ok")
        scored = 0
        try:
            with AudioReader(uri, spec.sample_rate, self.scoring.max_seconds, read_timeout_s=self.scoring.read_timeout_s) as reader, \
                    SpooledAudio(reader) as audio:
                call = prepare_call(audio, spec, self.bundle.frontend.segmentation)
                result.duration_s, result.sample_rate, result.channels = audio.duration_s, audio.source_rate, audio.channels
                result.talk = [np.round(np.reshape(r, (-1, 2)) * frame_s, 3) for r in call.talk]
                for group in batches_of(self.bundle.frontend.call_windows(call.channels, call.regions), self.batch_size):
                    windows = self.predict(group)
                    yield ScoredBatch(call_id, scored, windows)
                    scored += len(windows)
        except (AudioDecodeError, NonFiniteError, MemoryError) as err:
            result.status, result.error = "error", _reason(err)
        except Exception as err:  # a file must never crash the job: any failure becomes the call's error row
            log.exception("scoring %s failed", uri)
            result.status, result.error = "error", f"scoring failed: {brief(err)}"
        yield CallEnd(result, scored)

    def predict(self, chunks: list[WindowBatch]) -> Windows:
        """The model's probabilities (in :data:`~ser_core.labels.EMOTIONS` order) for ``chunks``' windows."""
        raw = self.bundle.predict(np.concatenate([c.windows for c in chunks]), batch_size=self.batch_size)
        return Windows(np.concatenate([np.full(len(c.windows), c.channel, np.int32) for c in chunks]),
                       np.concatenate([c.start_s for c in chunks]).astype(np.float64),
                       np.concatenate([c.end_s for c in chunks]).astype(np.float64),
                       np.concatenate([c.rms_db for c in chunks]).astype(np.float32),
                       in_emotion_order(raw, self.columns))


def _reason(err: BaseException) -> str:
    if isinstance(err, AudioDecodeError):
        return err.reason
    if isinstance(err, MemoryError):
        return "out of memory while scoring this file"
    return str(err)


def batches_of(chunks: Iterator[WindowBatch], size: int) -> Iterator[list[WindowBatch]]:
    """Consecutive window chunks grouped until each group holds at least ``size`` windows (the last may hold fewer)."""
    group, count = [], 0
    for chunk in chunks:
        group.append(chunk)
        count += len(chunk.windows)
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def checked_bundle(model: str | None) -> tuple[dict[str, bytes], str]:
    """The bundle's files and model version, after loading it and predicting two windows of silence.

    Any problem (unreadable, corrupt weights, unknown labels, unusable output) raises
    :class:`~ser_core.errors.Refused`: a job must not start with a model its workers cannot use.
    """
    try:
        files = read_bundle_files(model)
        bundle = load_bundle_files(files, str(model or "bundled model"))
        label_columns(bundle.labels)
        bundle.frontend.check()
        probe = bundle.predict(np.zeros((2, *bundle.frontend.input_shape), np.float32))
        if probe.shape != (2, len(bundle.labels)) or not np.isfinite(probe).all():
            raise ValueError(f"the model's output for silence has shape {probe.shape} or is not finite")
    except Exception as err:  # whatever the cause, the job is refused with it
        raise Refused(f"model bundle {model or '(bundled)'} is not usable: {brief(err)}") from None
    return files, bundle.version
