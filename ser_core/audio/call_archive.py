"""A call-centre archive with ground truth (``ser make-archive``), assembled from labelled corpora (or synthetic).

Each call alternates agent and customer turns spoken by two different speakers, separated by pauses, passed
through the call channel of :mod:`ser_core.audio.call_sim` (``ArchiveConfig.conditions``: each turn at its own
level, spread ``level_spread_db`` around its party's; 300-3400 Hz band; the other party's leak; a noise floor drawn
from ``noise_db``; G.711 mu-law; 8 kHz). Stereo calls carry the agent on channel 0 and the customer on channel 1;
mono calls mix both. Customer turns take the split's utterances in turn (by default the ``test`` split: the
held-out test groups recorded in the ``model`` bundle, speakers the model never trained on), so without ``calls``
every utterance of the split is one customer turn exactly once. A third of the calls put their customer's negative
turns last (an escalating call). Agent turns prefer the agent speaker's neutral and happy utterances.

Without corpora the voices are synthetic (harmonic sources with syllable envelopes and formants whose pitch,
rate and loudness follow the nominal emotion): good for demos and throughput, meaningless for accuracy, and
said so: :data:`SYNTHETIC_NOTICE` (in ``README.txt``, and on the console of ``ser make-archive``) and the ground
truth's ``synthetic`` column.

Output (local folder or ``s3://`` prefix)::

    OUT/audio/<date>/queue-<q>/c-<nnnn>.wav   the archive: ser score --archive OUT/audio
    OUT/ground_truth.parquet                  one row per turn (schema.GROUND_TRUTH)
    OUT/README.txt                            what was made, from what
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import soundfile as sf

from ser_core import storage
from ser_core.audio import call_sim
from ser_core.audio.decoding import AudioDecodeError, decode
from ser_core.audio.synthetic import synthetic_speech
from ser_core.corpora import scan_all
from ser_core.corpora.manifest import Utterance
from ser_core.errors import Refused
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS
from ser_core.models.bundle import BundleError, model_splits, read_bundle_info
from ser_core.reports.schema import GROUND_TRUTH

RATE = 8000
SYNTHETIC_NOTICE = (
    "SYNTHETIC AUDIO: no corpus was given, so every voice in this archive is synthesised (harmonic tones with "
    "syllable envelopes). The emotion labels are nominal; use it to demo and benchmark the pipeline, not to "
    "measure accuracy."
)


@dataclass(frozen=True)
class ArchiveConfig:
    """What ``ser make-archive`` builds."""

    out: str
    corpora: tuple[tuple[str, str], ...] = ()
    calls: int | None = None
    customer_turns: int = 4
    split: str = "test"
    model: str | None = None  # the bundle whose recorded held-out groups define ``split``; None: the bundled model
    stereo: bool = True
    date: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date().isoformat())
    queues: int = 2
    conditions: call_sim.CallConditions = call_sim.CallConditions()
    audio_format: str = "wav"
    seed: int = 0

    @property
    def synthetic(self) -> bool:
        return not self.corpora


@dataclass(frozen=True)
class Voice:
    """One utterance ready to place in a call: its 8 kHz samples and where they came from."""

    samples: np.ndarray
    emotion: str
    speaker: str
    corpus: str
    utterance_id: str
    source_uri: str


# ----------------------------------------------------------------------------------------- synthetic voices


def synthetic_voices(config: ArchiveConfig, rng: np.random.Generator) -> tuple[dict[str, list[Voice]], list[Voice]]:
    """Synthetic speakers' utterances (by speaker) and the customer turns, in call order."""
    calls = config.calls or 10
    by_speaker: dict[str, list[Voice]] = {}
    customers: list[Voice] = []
    for index in range(max(2, calls)):
        speaker = f"synthetic/voice-{index:02d}"
        base_f0 = rng.uniform(95, 230)
        emotions = rng.choice(EMOTIONS, size=config.customer_turns * 2)
        voices = [Voice(synthetic_speech(rng, str(e), base_f0, rng.uniform(1.5, 3.5)), str(e), speaker, "synthetic",
                        f"{speaker}/{i}", "") for i, e in enumerate(emotions)]
        by_speaker[speaker] = voices
        if index < calls:
            customers.extend(voices[: config.customer_turns])
    return by_speaker, customers


# -------------------------------------------------------------------------------------------- corpus voices


def corpus_voice(utt: Utterance) -> Voice:
    """An utterance at 8 kHz (the call channel trims its silences and gives it a line)."""
    samples = decode(utt.uri, target_rate=RATE, mono=True).samples[0]
    return Voice(samples, utt.emotion, f"{utt.corpus}/{utt.speaker}", utt.corpus, utt.utterance_id, utt.uri)


def corpus_utterances(config: ArchiveConfig) -> tuple[list[Utterance], bool]:
    """The utterances of ``config.split`` (or all) of the corpora in a stable order, and whether that split is
    the one recorded in the model's bundle (``False``: recomputed from these files, as for older bundles)."""
    scan = scan_all(config.corpora)
    try:
        splits = model_splits(read_bundle_info(config.model), scan.utterances)
    except BundleError as err:
        raise Refused(f"model refused: {err}") from None
    chosen = splits.select(scan.utterances, config.split)
    if not chosen:
        raise Refused(f"no utterances in split {config.split!r} of {', '.join(n for n, _ in config.corpora)} "
                      "(a corpus the model was not trained on has only --split all)")
    return sorted(chosen, key=lambda u: u.utterance_id), splits.recorded


# ------------------------------------------------------------------------------------------ placing turns


def arrange(customer: list[Voice], agent: list[Voice], escalate: bool, rng: np.random.Generator) -> list[tuple[Voice, str]]:
    """Agent and customer turns alternating (the agent opens and closes): ``(voice, role)`` in call order."""
    if escalate:
        customer = sorted(customer, key=lambda v: v.emotion in NEGATIVE_EMOTIONS)
    polite = [v for v in agent if v.emotion in ("neutral", "happy")] or agent
    order = []
    for voice in customer:
        order += [(polite[int(rng.integers(len(polite)))], "agent"), (voice, "customer")]
    order.append((polite[int(rng.integers(len(polite)))], "agent"))
    return order


def render(order: list[tuple[Voice, str]], config: ArchiveConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[call_sim.Turn]]:
    """The call's samples, ``(frames, 2)`` for stereo (agent, customer) or ``(frames,)`` for mono, and its turns."""
    turns = call_sim.arrange([(0 if role == "agent" else 1, voice.samples) for voice, role in order], config.conditions, rng)
    tracks = call_sim.render(turns, config.conditions, rng)
    return (tracks.T if config.stereo else np.clip(tracks.sum(axis=0), -1, 1)), turns


def _encode(samples: np.ndarray, audio_format: str) -> bytes:
    sink = io.BytesIO()
    sf.write(sink, samples, RATE, format=audio_format.upper(), subtype="PCM_16")
    return sink.getvalue()


@dataclass
class ArchiveSummary:
    """What was written."""

    calls: int = 0
    turns: int = 0
    audio_seconds: float = 0.0
    skipped_utterances: list[str] = field(default_factory=list)
    synthetic: bool = False
    split_recorded: bool = True  # the split is the model's recorded one (not recomputed from the files given)


def collect_voices(config: ArchiveConfig, rng: np.random.Generator, summary: ArchiveSummary) -> tuple[dict[str, list[Voice]], list[Voice]]:
    """Every speaker's voices, and the customer turns in order (a corpus speaker's utterances shuffled, speakers in turn)."""
    if config.synthetic:
        return synthetic_voices(config, rng)
    by_speaker: dict[str, list[Voice]] = defaultdict(list)
    utterances, summary.split_recorded = corpus_utterances(config)
    for utt in utterances:
        try:
            by_speaker[f"{utt.corpus}/{utt.speaker}"].append(corpus_voice(utt))
        except AudioDecodeError as err:
            summary.skipped_utterances.append(f"{utt.uri}: {err.reason}")
    if len(by_speaker) < 2:
        raise Refused("the archive needs at least two speakers (agent and customer) in the chosen split")
    return by_speaker, [by_speaker[s][i] for s in sorted(by_speaker) for i in rng.permutation(len(by_speaker[s]))]


def customer_groups(pool: list[Voice], size: int) -> list[list[Voice]]:
    """Consecutive runs of up to ``size`` turns of one speaker: one call's customer turns each."""
    groups: list[list[Voice]] = []
    for voice in pool:
        if not groups or len(groups[-1]) == size or groups[-1][0].speaker != voice.speaker:
            groups.append([])
        groups[-1].append(voice)
    return groups


def truth_rows(call_id: str, order: list[tuple[Voice, str]], turns: list[call_sim.Turn], escalate: bool,
               config: ArchiveConfig) -> list[dict]:
    """The call's rows of :data:`ser_core.reports.schema.GROUND_TRUTH` (a turn's times are its speech)."""
    customer_negative = {voice.emotion in NEGATIVE_EMOTIONS for voice, role in order if role == "customer"}
    mood = "escalating" if escalate and len(customer_negative) == 2 else "mixed"
    return [
        {
            "call_id": call_id, "turn": number, "role": role, "channel": turn.party if config.stereo else 0,
            "start_s": turn.start_s, "end_s": turn.end_s, "emotion": voice.emotion, "speaker": voice.speaker,
            "corpus": voice.corpus, "utterance_id": voice.utterance_id, "source_uri": voice.source_uri,
            "call_mood": mood, "synthetic": config.synthetic,
        }
        for number, ((voice, role), turn) in enumerate(zip(order, turns))
    ]


def make_archive(config: ArchiveConfig) -> ArchiveSummary:
    """Build the archive and its ground truth under ``config.out``."""
    rng = np.random.default_rng(config.seed)
    summary = ArchiveSummary(synthetic=config.synthetic)
    by_speaker, customer_pool = collect_voices(config, rng, summary)
    groups = customer_groups(customer_pool, config.customer_turns)
    order = rng.permutation(len(groups))
    truth = []
    for index in range(config.calls or len(groups)):
        customer = groups[order[index % len(groups)]]
        agents = sorted(s for s in by_speaker if s != customer[0].speaker)
        escalate = index % 3 == 2
        voices = arrange(customer, by_speaker[agents[int(rng.integers(len(agents)))]], escalate, rng)
        call_id = f"{config.date}/queue-{index % config.queues + 1}/c-{index:04d}"
        samples, turns = render(voices, config, rng)
        uri = storage.join(config.out, "audio", f"{call_id}.{config.audio_format}")
        storage.write_bytes_atomic(uri, _encode(samples, config.audio_format))
        truth += truth_rows(call_id, voices, turns, escalate, config)
        summary.calls += 1
        summary.turns += len(turns)
        summary.audio_seconds += samples.shape[0] / RATE
    storage.write_parquet_atomic(pa.Table.from_pylist(truth, schema=GROUND_TRUTH), storage.join(config.out, "ground_truth.parquet"))
    storage.write_bytes_atomic(storage.join(config.out, "README.txt"), _readme(config, summary).encode())
    return summary


def split_warning(config: ArchiveConfig, summary: ArchiveSummary) -> str | None:
    """A warning when the voices' split was recomputed from the files given rather than recorded in the bundle."""
    if config.synthetic or config.split == "all" or summary.split_recorded:
        return None
    return (f"WARNING: the model bundle records no held-out groups, so the {config.split!r} split was recomputed from "
            "the files given with its split settings; it is NOT guaranteed to hold the speakers it held out.")


def _readme(config: ArchiveConfig, summary: ArchiveSummary) -> str:
    source = SYNTHETIC_NOTICE if config.synthetic else (
        f"Voices from the {config.split!r} split of {', '.join(f'{n}={p}' for n, p in config.corpora)}; "
        "each source utterance is named in ground_truth.parquet (utterance_id, source_uri)."
    )
    warning = split_warning(config, summary)
    source += f"\n{warning}" if warning else ""
    layout = "stereo (channel 0 agent, channel 1 customer)" if config.stereo else "mono (agent and customer mixed)"
    return (
        f"{summary.calls} calls, {summary.turns} turns, {summary.audio_seconds / 3600:.2f} h of 8 kHz {layout} telephone-band audio "
        f"under audio/ (seed {config.seed}; turn levels ±{config.conditions.level_spread_db:g} dB around each party's, noise "
        f"floor {config.conditions.noise_db[0]:g} to {config.conditions.noise_db[1]:g} dBFS, G.711 mu-law).\n{source}\nGround truth: ground_truth.parquet, one row per turn.\n"
    )
