"""Small synthetic audio for tests: voiced-speech-like harmonic tones with syllable envelopes, written in any format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def speech_like(seconds: float, sample_rate: int, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a wobbling pitch, 4 Hz syllable envelope and a little noise (mono float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 8) if k * f0 < sample_rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    y = 0.3 * harmonics * envelope + 0.005 * rng.standard_normal(t.size)
    return (y / max(1e-9, np.abs(y).max()) * 0.5).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``samples`` (``(frames,)`` or ``(frames, channels)``) to ``path``; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype)
    return path


def write_speech(path: Path, seconds: float = 2.0, sample_rate: int = 16000, channels: int = 1, f0: float = 180.0,
                 seed: int = 0, subtype: str | None = None) -> Path:
    """A speech-like file; extra channels carry the same voice at another pitch."""
    mono = speech_like(seconds, sample_rate, f0, seed)
    data = mono if channels == 1 else np.stack([speech_like(seconds, sample_rate, f0 * (1 + 0.3 * c), seed + c) for c in range(channels)], axis=1)
    return write_audio(path, data, sample_rate, subtype)


def write_corrupt_files(folder: Path) -> dict[str, Path]:
    """Bad inputs by kind: ``empty`` (0 bytes), ``text`` (not audio), ``truncated`` (WAV cut mid-data),
    ``header`` (WAV header cut off before its data), ``silent`` (a valid WAV with zero frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    text = folder / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    good = write_speech(folder / "_good.wav", seconds=1.0)
    raw = good.read_bytes()
    good.unlink()
    truncated = folder / "truncated.wav"
    truncated.write_bytes(raw[: len(raw) // 2])
    header = folder / "header.wav"
    header.write_bytes(raw[:44])
    silent = write_audio(folder / "zero-frames.wav", np.zeros(0, np.float32), 16000)
    return {"empty": empty, "text": text, "truncated": truncated, "header": header, "silent": silent}
