"""Augmentations do what they say, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.audio.augment import AugmentPolicy, add_noise, augment_copy, gain, pitch_shift, telephone, time_stretch
from tests.audio_factory import speech_like

RATE = 16000


def _f0(y: np.ndarray, rate: int = RATE) -> float:
    import librosa

    f0 = librosa.yin(y, fmin=80, fmax=600, sr=rate)
    return float(np.median(f0))


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_at_requested_snr(snr, colour):
    y = speech_like(1.0, RATE)
    noisy = add_noise(y, snr, np.random.default_rng(0), colour)
    measured = 10 * np.log10(np.mean(y**2) / np.mean((noisy - y) ** 2))
    assert measured == pytest.approx(snr, abs=0.1)


def test_pitch_shift_moves_f0_and_keeps_length():
    y = speech_like(1.0, RATE, f0=200.0)
    up = pitch_shift(y, RATE, 12.0)
    assert up.size == y.size
    assert _f0(up) / _f0(y) == pytest.approx(2.0, rel=0.08)


def test_time_stretch_changes_length_not_pitch():
    y = speech_like(1.0, RATE, f0=200.0)
    fast = time_stretch(y, 1.25)
    assert fast.size == pytest.approx(y.size / 1.25, rel=0.02)
    assert _f0(fast) == pytest.approx(_f0(y), rel=0.05)


def test_gain_and_clipping():
    y = speech_like(0.5, RATE)
    np.testing.assert_allclose(gain(y, -20.0), y * 0.1, rtol=1e-5)
    assert np.abs(gain(y, 40.0)).max() <= 1.0


def test_telephone_removes_high_band():
    rng = np.random.default_rng(1)
    wide = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
    phone = telephone(wide, RATE)
    spectrum = np.abs(np.fft.rfft(phone)) ** 2
    freqs = np.fft.rfftfreq(phone.size, 1 / RATE)
    in_band = spectrum[(freqs > 500) & (freqs < 3000)].mean()
    assert phone.size == wide.size
    assert spectrum[freqs > 4500].mean() < in_band * 1e-3
    assert spectrum[freqs < 100].mean() < in_band * 0.05


def test_augment_copy_is_seeded_by_key_and_copy():
    y = speech_like(1.0, RATE)
    policy = AugmentPolicy()
    a, desc_a = augment_copy(y, RATE, policy, "ravdess/x", 1)
    b, desc_b = augment_copy(y, RATE, policy, "ravdess/x", 1)
    np.testing.assert_array_equal(a, b)
    assert desc_a == desc_b and desc_a
    descriptions = {augment_copy(y, RATE, policy, "ravdess/x", c)[1] for c in range(1, 9)}
    assert len(descriptions) > 4
    assert augment_copy(y, RATE, AugmentPolicy(seed=1), "ravdess/x", 1)[1] != desc_a or not np.array_equal(
        augment_copy(y, RATE, AugmentPolicy(seed=1), "ravdess/x", 1)[0], a
    )


@pytest.mark.parametrize("rate", [0.8, 1.0, 1.17])
def test_phase_vocoder_matches_librosa(rate):
    import librosa

    from ser_core.audio.augment import phase_vocoder

    stft = librosa.stft(speech_like(0.8, RATE), n_fft=512, hop_length=128)
    ours = phase_vocoder(stft, rate, 128)
    reference = librosa.phase_vocoder(stft, rate=rate, hop_length=128, n_fft=512)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(np.abs(ours), np.abs(reference), atol=1e-4)
    np.testing.assert_allclose(ours, reference, atol=2e-3 * np.abs(reference).max())


def test_pitch_shift_matches_librosa():
    import librosa

    from ser_core.audio.augment import VOCODER_FFT

    y = speech_like(1.0, RATE)
    reference = librosa.effects.pitch_shift(y, sr=RATE, n_steps=2.5, n_fft=VOCODER_FFT, res_type="soxr_hq")
    ours = pitch_shift(y, RATE, 2.5)
    assert np.corrcoef(ours, reference)[0, 1] > 0.99
