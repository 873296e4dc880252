"""The call channel and the training examples drawn through it: turns at their own levels, leak, G.711, truth."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.audio import call_sim
from ser_core.audio.segmentation import call_regions
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import FeatureFrontend
from ser_core.training.examples import CALL_COPY, example_copies
from tests.audio_factory import speech_like

SPEC = FeatureSpec()
FRAME_S = SPEC.hop_length / SPEC.sample_rate


def covered(regions: np.ndarray, span: tuple[float, float]) -> float:
    """Share of ``span`` (seconds) inside the regions (VAD frames)."""
    frames = np.arange(int(span[0] / FRAME_S), int(span[1] / FRAME_S))
    inside = np.zeros(frames.size, bool)
    for a, b in regions:
        inside |= (frames >= a) & (frames < b)
    return float(inside.mean())


def test_quiet_turns_are_found_whatever_the_loud_ones_do():
    """Turns 15 dB apart over a -45 dBFS line with a -30 dB leak: the VAD follows each turn, not the loudest."""
    rate, rng = call_sim.RATE, np.random.default_rng(0)
    voices = [(i % 2, speech_like(2.0, rate, f0=120 + 40 * i, seed=i)) for i in range(6)]
    turns = call_sim.arrange(voices, call_sim.CallConditions(), rng)
    tracks = np.zeros((2, int((turns[-1].end_s + 0.5) * rate)), np.float32)
    for number, turn in enumerate(turns):
        level_db = -35.0 if number in (2, 3) else -20.0  # the second exchange 15 dB quieter than the rest
        start = int(turn.start_s * rate)
        voice = turn.samples / np.sqrt(np.mean(turn.samples**2)) * 10 ** (level_db / 20)
        tracks[turn.party, start : start + voice.size] += voice
    call = tracks + 10 ** (-30 / 20) * tracks[::-1] + 10 ** (-45 / 20) * rng.standard_normal(tracks.shape).astype(np.float32)
    regions = call_regions(call_sim.mu_law(call), SPEC)
    for turn in turns:
        assert covered(regions[turn.party], turn.speech_span) > 0.9
        assert covered(regions[1 - turn.party], turn.speech_span) < 0.1  # its leak is not the other party's speech


def test_rendered_calls_put_each_party_on_its_channel_with_a_noise_floor():
    conditions = call_sim.CallConditions(noise_db=(-50.0, -50.0), mu_law=False)
    turns = call_sim.arrange([(0, speech_like(1.0, call_sim.RATE)), (1, speech_like(1.0, call_sim.RATE, seed=2))],
                             conditions, np.random.default_rng(3))
    call = call_sim.render(turns, conditions, np.random.default_rng(4))
    assert call.shape[0] == 2 and call.shape[1] >= turns[-1].end_s * call_sim.RATE
    silence = call[:, : int(0.25 * call_sim.RATE)]  # before the first turn (pauses are at least 0.3 s)
    assert 20 * np.log10(np.sqrt(np.mean(silence**2))) == pytest.approx(-50.0, abs=1.0)
    first = slice(int(turns[0].start_s * call_sim.RATE), int(turns[0].end_s * call_sim.RATE))
    assert np.mean(call[0, first] ** 2) > 30 * np.mean(call[1, first] ** 2)  # the agent is loud on 0, leaks on 1


def test_examples_are_the_clip_and_the_call_channel_seeded_by_utterance():
    frontend = FeatureFrontend(SPEC)
    clip = np.concatenate([np.zeros(4000, np.float32), speech_like(3.0, SPEC.sample_rate), np.zeros(4000, np.float32)])
    first = list(example_copies(frontend, clip, "corpus/utt-1", augment=1))
    assert [(copy, description.endswith("call") or description == "none") for copy, description, *_ in first] == [
        (0, True), (CALL_COPY, True), (CALL_COPY + 1, True)]
    assert all(len(windows) >= 1 and windows.shape[1:] == SPEC.window_shape for _, _, windows, _ in first)
    again = list(example_copies(frontend, clip, "corpus/utt-1", augment=1))
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(first, again))  # reruns give the same examples
    other = list(example_copies(frontend, clip, "corpus/utt-2", augment=0))
    assert not np.array_equal(first[1][2], other[1][2])  # another utterance, another draw of the channel
    assert -0.5 <= first[1][3][0] <= 0.6  # call windows start near the utterance's speech, in its own time
