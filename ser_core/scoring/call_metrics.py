"""Call metrics from the segmentation: talk, silence, overtalk, interruptions, turns and sentiment over the call.

Everything here works on **talk** intervals in seconds (each channel's speech regions without the VAD's padding,
:func:`ser_core.audio.vad.detect`) and on the scored windows. A **turn** is a party's talk with pauses under
:data:`TURN_GAP_S` bridged. A party **interrupts** when one of its turns starts while the other party is
mid-turn and the two overlap for at least :data:`INTERRUPTION_OVERLAP_S`.
"""

from __future__ import annotations

import numpy as np

TURN_GAP_S = 0.5
INTERRUPTION_OVERLAP_S = 0.5


def merged(intervals: np.ndarray, gap_s: float = 0.0) -> np.ndarray:
    """``(n, 2)`` intervals sorted and merged where they overlap or are less than ``gap_s`` apart.

    >>> merged(np.array([[3.0, 4.0], [0.0, 1.0], [1.2, 2.0]]), gap_s=0.5).tolist()
    [[0.0, 2.0], [3.0, 4.0]]
    """
    intervals = np.asarray(intervals, np.float64).reshape(-1, 2)
    out: list[list[float]] = []
    for a, b in intervals[np.argsort(intervals[:, 0], kind="stable")]:
        if out and (a <= out[-1][1] or a - out[-1][1] < gap_s):
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out, np.float64).reshape(-1, 2)


def total(intervals: np.ndarray) -> float:
    """Seconds covered by ``intervals`` (overlaps counted once)."""
    m = merged(intervals)
    return float((m[:, 1] - m[:, 0]).sum())


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Seconds covered by both interval sets: ``total(a) + total(b) - total(a ∪ b)``."""
    return max(0.0, total(a) + total(b) - total(np.concatenate([np.reshape(a, (-1, 2)), np.reshape(b, (-1, 2))])))


def turns(talk: np.ndarray) -> np.ndarray:
    """A party's turns: its talk with pauses under :data:`TURN_GAP_S` bridged."""
    return merged(talk, TURN_GAP_S)


def interruptions(own: np.ndarray, other: np.ndarray) -> int:
    """How many of the turns ``own`` start while a turn of ``other`` is under way and overlap it by at least
    :data:`INTERRUPTION_OVERLAP_S`."""
    count = 0
    for start, end in own:
        under_way = (other[:, 0] < start) & (other[:, 1] > start)
        count += bool((np.minimum(end, other[under_way, 1]) - start >= INTERRUPTION_OVERLAP_S).any())
    return count


def mean_over(start_s: np.ndarray, end_s: np.ndarray, values: np.ndarray, a: float, b: float) -> float | None:
    """Mean of per-window ``values`` weighted by each window's overlap with ``[a, b)``; None when none overlaps."""
    weights = np.clip(np.minimum(end_s, b) - np.maximum(start_s, a), 0.0, None)
    return float(np.average(values, weights=weights)) if weights.sum() > 0 else None


def sentiment_start_end(start_s: np.ndarray, end_s: np.ndarray, valence: np.ndarray, duration_s: float) -> dict:
    """Mean valence of a party's windows over the first and the last quarter of the call (None where it is silent)."""
    quarter = duration_s / 4
    return {"sentiment_start": mean_over(start_s, end_s, valence, 0.0, quarter),
            "sentiment_end": mean_over(start_s, end_s, valence, duration_s - quarter, duration_s)}


def talk_metrics(talk: dict[str, np.ndarray], duration_s: float) -> dict:
    """Per role ``{role}_speech_s``; ``non_talk_s`` (nobody speaks); for agent and customer, ``overtalk_s`` (both
    speak) and each party's interruptions of the other."""
    row: dict = {f"{role}_speech_s": total(intervals) for role, intervals in talk.items()}
    everyone = np.concatenate([np.reshape(t, (-1, 2)) for t in talk.values()]) if talk else np.zeros((0, 2))
    row["non_talk_s"] = max(0.0, duration_s - total(everyone))
    if {"agent", "customer"} <= talk.keys():
        agent, customer = turns(talk["agent"]), turns(talk["customer"])
        row["overtalk_s"] = overlap(talk["agent"], talk["customer"])
        row["agent_interruptions"] = interruptions(agent, customer)
        row["customer_interruptions"] = interruptions(customer, agent)
    return row


def turn_table(talk: dict[str, np.ndarray], role_channel: dict[str, int], start_s: np.ndarray, end_s: np.ndarray,
               window_roles: np.ndarray, probs: np.ndarray) -> dict[str, list]:
    """One row per turn of every role, numbered over the call in time order: times, the windows overlapping it, and
    their probabilities averaged by overlap (None where no window overlaps)."""
    rows = []
    for role, intervals in talk.items():
        mine = window_roles == role
        for a, b in turns(intervals):
            weights = np.clip(np.minimum(end_s[mine], b) - np.maximum(start_s[mine], a), 0.0, None)
            mean = (weights @ probs[mine]) / weights.sum() if weights.sum() > 0 else None
            rows.append((a, role_channel[role], role, b, int((weights > 0).sum()), mean))
    rows.sort(key=lambda r: (r[0], r[1]))
    return {
        "turn": list(range(len(rows))),
        "channel": [r[1] for r in rows],
        "speaker_role": [r[2] for r in rows],
        "start_s": [r[0] for r in rows],
        "end_s": [r[3] for r in rows],
        "windows": [r[4] for r in rows],
        "probs": [r[5] for r in rows],
    }

