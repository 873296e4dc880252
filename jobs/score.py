"""``ser score``: the nightly call-archive scoring job, Ray Data batch inference to Parquet emotion reports.

Pipeline (Ray Data, streaming; memory stays flat whatever the archive's size and each file's length)::

    load and check the model in the driver ─► take the report prefix's lease ─► recover the store
    list audio files under the archive ──► from_items, one block per call
      ──► map_batches(CallScorer, ActorPoolStrategy(size=workers), batch_size=1)
            decode block by block (channels kept, model rate) to a local spool file · frame levels and VAD ·
            frame features once per speech region · windows sliced from the frame matrix · model inference in
            batches (model loaded once per actor) · yields segment rows as it goes, then one row closing the call
      ──► driver: iter_batches ─► per-call collection ─► summary row ─► ReportStore.commit (Parquet parts)

Decoding, features and inference share one actor, so feature tensors never cross processes; a long call streams
out in batches of windows. The driver only sees small rows (times and probabilities).

The report store (``ser_core.reports.store``) owns the output's layout and its state model: what is committed,
what recovery may remove, and the lease that makes one run at a time the writer. This job decides what to score:

* An input is its ``source_uri``; its ``call_id`` is the path relative to the id root without extension (see
  :func:`id_root`), unique in OUT: a run whose ids would name another file already in OUT is refused.
* An input already ``ok`` with the same model version and ``--agent-channel`` is skipped; everything else (new,
  failed, scored by another model or agent channel, or all with ``--force``) is scored and replaces its row.
* Bad input is data: a file that is not a regular file (FIFO, socket, device: never opened for reading), whose
  read stalls past ``--read-timeout``, that cannot be decoded, is over the length limit, or gives non-finite
  features or probabilities gets a calls row with status ``error`` and the reason. A file on which the scoring worker keeps
  dying (``--task-retries`` + 1 times) gets such a row too, unless it already has a row, which is then kept.
* Job-level failures change nothing they should not: a model that does not load or predict fails the job
  before any work; if the pipeline fails (actors, cluster, more than ``--max-crashed-calls`` crashed files), the
  calls finished so far are committed, every other input keeps its earlier row, and the job exits non-zero.
* Ray retries the work of a killed worker; the driver keys windows by (call, window number) so a retried task's
  repeated rows are dropped, and a call is written only once its call row and all its windows have arrived.
* Ctrl-C (SIGINT, even where the shell started the job with SIGINT ignored) stops the pipeline: the calls
  finished so far are committed, the lease is released, the job exits with status 130, and the next run
  scores the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import re
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import click
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from jobs import options
from ser_core import storage
from ser_core.audio.decoding import AudioDecodeError, AudioReader, SpooledAudio
from ser_core.audio.segmentation import NonFiniteError, WindowBatch, prepare_call
from ser_core.errors import Refused
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import load_bundle_files, read_bundle_files
from ser_core.reports.schema import CALLS, SEGMENTS, TURNS
from ser_core.reports.store import IndexRow, Lease, LeaseHeld, LeaseLost, ReportStore, already_scored
from ser_core.scoring.calls import (
    CallResult,
    ScoringConfig,
    in_emotion_order,
    label_columns,
    speaker_role,
    summarise_call,
    turn_rows,
    window_labels,
)
from ser_core.scoring.contact_metadata import ContactMetadata, MetadataError, folder_queue, read_metadata
from ser_core.text import shown

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".aif", ".aiff")
CALL_ROW = -1  # ``seq`` of the row that closes a call in the pipeline's output
INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports a process ended by SIGINT
DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ScoreJobConfig:
    """Everything ``ser score`` needs."""

    archive: str
    out: str
    date: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date().isoformat())
    model: str | None = None
    scoring: ScoringConfig = ScoringConfig()
    force: bool = False
    workers: int | None = None
    ray_address: str | None = None
    batch_size: int = 256
    calls_per_part: int = 500
    progress: bool = True
    id_root: str | None = None
    task_retries: int = 2
    max_crashed_calls: int = 10
    lease_ttl_s: float = 120.0
    metadata: str | None = None


@dataclass
class ScoreSummary:
    """What one run did; every input file is counted once in ``ok``, ``error``, ``skipped``, ``kept`` or ``unfinished``."""

    files: int = 0
    ok: int = 0
    error: int = 0
    skipped: int = 0
    kept: int = 0
    unfinished: int = 0
    replaced: int = 0
    segments: int = 0
    parts: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    model_version: str = ""
    run_id: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    pipeline_error: str | None = None
    interrupted: bool = False
    metadata_rows: int = 0
    metadata_unmatched: int = 0  # rows of --metadata that match no recording
    without_metadata: int = 0  # recordings that have no row in --metadata


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CallInput:
    call_id: str
    uri: str


def id_root(archive: str, explicit: str | None = None) -> str:
    """The folder call ids are relative to: ``explicit``, else the archive's parent when the archive is a day
    folder (``.../2026-11-20/``, so the day is part of every id), else the archive itself."""
    if explicit is not None:
        return explicit
    trimmed = archive.rstrip("/") if storage.is_remote(archive) else os.path.abspath(archive)
    parent, name = posixpath.split(trimmed)
    return parent if DAY_FOLDER.fullmatch(name) else archive


def list_calls(archive: str, root: str | None = None) -> list[CallInput]:
    """Every audio file under ``archive`` with its call id: its path relative to :func:`id_root`, without extension
    (an archive that is one file: the id root of its folder, so ``.../q/c-1.wav`` is ``c-1``).

    Two files that differ only by extension (``c-1.wav``, ``c-1.flac``) keep their extensions in their ids.
    """
    if not storage.exists(archive):
        raise FileNotFoundError(f"archive {archive} does not exist")
    fs, path = storage.filesystem(archive)
    base = id_root((posixpath.dirname(archive) or ".") if root is None and not fs.isdir(path) else archive, root)
    uris = storage.list_files(archive, AUDIO_EXTENSIONS)
    relative = [storage.relative_to(uri, base) for uri in uris]
    outside = [rel for rel in relative if rel.startswith("../")]
    if outside:
        raise Refused(f"--id-root {base} does not contain the archive (e.g. {outside[0]})")
    stems = [posixpath.splitext(rel)[0] for rel in relative]
    taken = Counter(stems)
    return [CallInput(stem if taken[stem] == 1 else rel, uri) for uri, rel, stem in zip(uris, relative, stems)]


def call_id_conflicts(calls: list[CallInput], owners: dict[str, str]) -> list[str]:
    """Messages for inputs whose call id already names another file in the store."""
    return [f"{c.call_id}: {c.uri} vs {owners[c.call_id]}" for c in calls if owners.get(c.call_id, c.uri) != c.uri]


# ------------------------------------------------------------------------------------------ the actor


class CallScorer:
    """Ray Data callable class: scores one call per input row, yielding segment rows and then the call's row."""

    def __init__(self, bundle_files: dict[str, bytes], scoring: ScoringConfig, batch_size: int, threads: int = 1):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.bundle = load_bundle_files(bundle_files, "shipped by the driver")
        self.columns = label_columns(self.bundle.labels)
        self.scoring = scoring
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for call_id, uri in zip(batch["call_id"], batch["uri"]):
            yield from self.score(str(call_id), str(uri))

    def score(self, call_id: str, uri: str) -> Iterator[dict[str, np.ndarray]]:
        """Rows for one call: batches of scored windows, then one row (``seq`` -1) with the call's facts."""
        spec = self.bundle.spec
        frame_s = spec.hop_length / spec.sample_rate
        facts: dict = {"status": "ok", "error": None}
        scored = 0
        try:
            with AudioReader(uri, spec.sample_rate, self.scoring.max_seconds, read_timeout_s=self.scoring.read_timeout_s) as reader, \
                    SpooledAudio(reader) as audio:
                call = prepare_call(audio, spec, self.bundle.frontend.segmentation)
                facts.update(duration_s=audio.duration_s, sample_rate=audio.source_rate, channels=audio.channels,
                             talk=[np.round(r * frame_s, 3).tolist() for r in call.talk])
                for group in _batches(self.bundle.frontend.call_windows(call.channels, call.regions), self.batch_size):
                    yield self._predict(call_id, group, scored)
                    scored += sum(len(chunk.windows) for chunk in group)
        except AudioDecodeError as err:
            facts.update(status="error", error=err.reason)
        except NonFiniteError as err:
            facts.update(status="error", error=str(err))
        except MemoryError:
            facts.update(status="error", error="out of memory while scoring this file")
        except Exception as err:  # a file must never crash the job: any failure becomes the call's error row
            log.exception("scoring %s failed", uri)
            facts.update(status="error", error=f"scoring failed: {brief(err)}")
        facts["windows"] = scored
        yield _rows(call_id, seq=np.array([CALL_ROW]), channel=np.zeros(1, np.int32), start_s=np.zeros(1), end_s=np.zeros(1),
                    rms_db=np.zeros(1, np.float32), probs=np.zeros((1, len(EMOTIONS)), np.float32),
                    call=json.dumps({"source_uri": uri, **facts}))

    def _predict(self, call_id: str, chunks: list[WindowBatch], first_seq: int) -> dict[str, np.ndarray]:
        raw = self.bundle.predict(np.concatenate([c.windows for c in chunks]), batch_size=self.batch_size)
        probs = in_emotion_order(raw, self.columns)
        n = len(probs)
        return _rows(call_id, seq=np.arange(first_seq, first_seq + n), channel=np.concatenate([np.full(len(c.windows), c.channel) for c in chunks]),
                     start_s=np.concatenate([c.start_s for c in chunks]), end_s=np.concatenate([c.end_s for c in chunks]),
                     rms_db=np.concatenate([c.rms_db for c in chunks]), probs=probs, call="")


def _batches(chunks: Iterator[WindowBatch], size: int) -> Iterator[list[WindowBatch]]:
    """Group consecutive window chunks until each group holds at least ``size`` windows (the last may hold fewer)."""
    group, count = [], 0
    for chunk in chunks:
        group.append(chunk)
        count += len(chunk.windows)
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def brief(err: Exception, limit: int = 400) -> str:
    """``Type: first line [... last line]`` of an error, at most ``limit`` characters.

    Ray's errors carry the remote traceback in their message; its last line is the root cause.
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = f"{type(err).__name__}: " + (lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}") if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rows(call_id: str, seq, channel, start_s, end_s, rms_db, probs, call: str) -> dict[str, np.ndarray]:
    n = len(seq)
    return {
        "call_id": np.array([call_id] * n, dtype=object),
        "seq": np.asarray(seq, np.int32),
        "channel": np.asarray(channel, np.int32),
        "start_s": np.asarray(start_s, np.float64),
        "end_s": np.asarray(end_s, np.float64),
        "rms_db": np.asarray(rms_db, np.float32),
        "probs": np.asarray(probs, np.float32),
        "call": np.array([call] * n, dtype=object),
    }


# -------------------------------------------------------------------------------- driver-side collection


@dataclass
class _PartialCall:
    batches: list[dict[str, np.ndarray]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    facts: dict | None = None


class CallCollector:
    """Reassembles calls from the pipeline's rows, in any order, dropping rows repeated by retried tasks."""

    def __init__(self, calls: list[CallInput]):
        self.uris = {c.call_id: c.uri for c in calls}
        self.partial: dict[str, _PartialCall] = {}
        self.done: set[str] = set()

    def add(self, batch: dict[str, np.ndarray]) -> list[CallResult]:
        """Take one batch of rows; return the calls it completed."""
        completed = []
        call_ids = batch["call_id"]
        for call_id in dict.fromkeys(call_ids):
            if call_id in self.done:
                continue
            rows = call_ids == call_id
            part = self.partial.setdefault(call_id, _PartialCall())
            seq = batch["seq"][rows]
            closing = seq == CALL_ROW
            if closing.any():
                part.facts = json.loads(batch["call"][rows][closing][0])
            fresh = ~closing & ~np.isin(seq, list(part.seen))
            if fresh.any():
                part.seen.update(seq[fresh].tolist())
                part.batches.append({k: batch[k][rows][fresh] for k in ("seq", "channel", "start_s", "end_s", "rms_db", "probs")})
            if part.facts is not None and len(part.seen) >= part.facts["windows"]:
                completed.append(self._result(call_id, self.partial.pop(call_id)))
                self.done.add(call_id)
        return completed

    def unfinished(self) -> list[CallInput]:
        """Every call not completed."""
        return [CallInput(call_id, uri) for call_id, uri in self.uris.items() if call_id not in self.done]

    def _result(self, call_id: str, part: _PartialCall) -> CallResult:
        facts = part.facts
        result = CallResult(call_id, facts["source_uri"], facts["status"], facts["error"], facts.get("duration_s"),
                            facts.get("sample_rate"), facts.get("channels"),
                            [np.array(t, np.float64).reshape(-1, 2) for t in facts.get("talk", [])])
        if facts["status"] == "ok" and part.batches:
            merged = {k: np.concatenate([b[k] for b in part.batches]) for k in part.batches[0]}
            order = np.argsort(merged["seq"])
            result.channel, result.start_s, result.end_s = merged["channel"][order], merged["start_s"][order], merged["end_s"][order]
            result.rms_db, result.probs = merged["rms_db"][order], merged["probs"][order]
        return result


# ------------------------------------------------------------------------------------------ the parts


class PartWriter:
    """Buffers completed calls and commits them to the store as parts of ``calls_per_part`` calls."""

    def __init__(self, store: ReportStore, date: str, run_id: str, model_version: str, scoring: ScoringConfig,
                 calls_per_part: int, contacts: dict[str, dict] | None = None):
        self.store, self.date, self.run_id, self.model_version = store, date, run_id, model_version
        self.scoring, self.calls_per_part = scoring, calls_per_part
        self.contacts = contacts or {}  # call_id -> contact columns (``--metadata``)
        self.buffer: list[CallResult] = []
        self.parts = 0
        self.replaced = 0

    def add(self, result: CallResult) -> None:
        self.buffer.append(result)
        if len(self.buffer) >= self.calls_per_part:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered calls as one part (the store then drops their older rows)."""
        if not self.buffer:
            return
        scored_at = dt.datetime.now(dt.timezone.utc)
        name = f"date={self.date}/part-{self.run_id}-{self.parts:05d}.parquet"
        details = {"segments": self._segments(scored_at), "turns": self._turns(scored_at)}
        self.replaced += self.store.commit(name, details, self._calls(scored_at))
        self.parts += 1
        self.buffer = []

    def _run_columns(self, n: int, scored_at: dt.datetime) -> dict:
        return {"model_version": [self.model_version] * n, "run_id": [self.run_id] * n, "scored_at": [scored_at] * n}

    def _calls(self, scored_at: dt.datetime) -> pa.Table:
        rows = [{**summarise_call(r, self.scoring), **self.contacts.get(r.call_id, {})} for r in self.buffer]
        for row in rows:
            row["queue"] = row.get("queue") or folder_queue(row["source_uri"])
        columns = {name: [row.get(name) for row in rows] for name in CALLS.names}
        columns.update(self._run_columns(len(rows), scored_at))
        return pa.table(columns, schema=CALLS)

    def _turns(self, scored_at: dt.datetime) -> pa.Table:
        tables = [turn_rows(r, self.scoring) for r in self.buffer if r.status == "ok"]
        if not tables:
            return TURNS.empty_table()
        columns = {name: [v for t in tables for v in t[name]] for name in tables[0]}
        columns.update(self._run_columns(len(columns["call_id"]), scored_at))
        return pa.table(columns, schema=TURNS)

    def _segments(self, scored_at: dt.datetime) -> pa.Table:
        scored = [r for r in self.buffer if r.status == "ok" and len(r.probs)]
        if not scored:
            return SEGMENTS.empty_table()
        probs = np.concatenate([r.probs for r in scored])
        labels = window_labels(probs)
        agent = self.scoring.agent_channel
        columns = {
            "call_id": [r.call_id for r in scored for _ in range(len(r.probs))],
            "channel": np.concatenate([r.channel for r in scored]),
            "speaker_role": [speaker_role(int(c), r.scored_channels, agent) for r in scored for c in r.channel],
            "start_s": np.concatenate([r.start_s for r in scored]),
            "end_s": np.concatenate([r.end_s for r in scored]),
            "emotion": np.asarray(EMOTIONS, dtype=object)[labels["emotion"]],
            "confidence": labels["confidence"],
            **{f"prob_{e}": probs[:, i] for i, e in enumerate(EMOTIONS)},
            "valence": labels["valence"],
            "arousal": labels["arousal"],
            "rms_db": np.concatenate([r.rms_db for r in scored]),
            **self._run_columns(len(probs), scored_at),
        }
        return pa.table(columns, schema=SEGMENTS)


# ---------------------------------------------------------------------------------------------- the job


def make_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sortable by start time, unique."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def checked_bundle(model: str | None) -> tuple[dict[str, bytes], str]:
    """The bundle's files and model version, after loading it and predicting one window in the driver.

    Any problem (unreadable, corrupt weights, unknown labels, unusable output) is a job-level failure raised as
    :class:`~ser_core.errors.Refused` before anything is read or written.
    """
    try:
        files = read_bundle_files(model)
        bundle = load_bundle_files(files, str(model or "bundled model"))
        label_columns(bundle.labels)
        bundle.frontend.check()
        probe = bundle.predict(np.zeros((2, *bundle.frontend.input_shape), np.float32))
        if probe.shape != (2, len(bundle.labels)) or not np.isfinite(probe).all():
            raise ValueError(f"the model's output for silence has shape {probe.shape} or is not finite")
    except Exception as err:  # the job must not start with a model the actors cannot use
        raise Refused(f"model bundle {model or '(bundled)'} is not usable: {brief(err)}") from None
    return files, bundle.version


def contact_columns(calls: list[CallInput], metadata: ContactMetadata | None, archive: str,
                    summary: ScoreSummary) -> dict[str, dict]:
    """``call_id -> calls columns`` from ``metadata`` (rows keyed by path relative to ``archive`` or by call id),
    counting rows that match no recording and recordings without a row into ``summary``."""
    if metadata is None:
        return {}
    found = {c.call_id: metadata.lookup(c.call_id, storage.relative_to(c.uri, archive)) for c in calls}
    summary.metadata_rows, summary.metadata_unmatched = len(metadata.rows), metadata.unmatched
    summary.without_metadata = sum(row is None for row in found.values())
    return {call_id: row for call_id, row in found.items() if row is not None}


def run_score(config: ScoreJobConfig) -> ScoreSummary:
    """Run the scoring job and return its summary (see the module docstring for the semantics)."""
    started = time.time()
    calls = list_calls(config.archive, config.id_root)
    metadata = read_metadata(config.metadata) if config.metadata else None
    bundle_files, model_version = checked_bundle(config.model)
    summary = ScoreSummary(files=len(calls), model_version=model_version, run_id=make_run_id())
    contacts = contact_columns(calls, metadata, config.archive, summary)
    lease = Lease(config.out, owner=summary.run_id, ttl_s=config.lease_ttl_s)
    try:
        lease.acquire()
    except LeaseHeld as err:
        raise Refused(f"another ser score is writing {config.out}: {err}") from None
    try:
        store = ReportStore(config.out, lease)
        previous = store.recover()
        conflicts = call_id_conflicts(calls, store.call_id_owners())
        if conflicts:
            raise Refused(f"{len(conflicts)} call ids already name other files in {config.out} "
                          f"(e.g. {conflicts[0]}); pass --id-root to give them unique ids")
        agent = config.scoring.agent_channel
        todo = [c for c in calls if config.force or not already_scored(previous.get(c.uri), model_version, agent)]
        summary.skipped = len(calls) - len(todo)
        writer = PartWriter(store, config.date, summary.run_id, model_version, config.scoring, config.calls_per_part, contacts)
        try:
            if todo:
                _score_all(config, todo, bundle_files, previous, writer, summary)
        finally:
            writer.flush()
        summary.parts, summary.replaced = writer.parts, writer.replaced
    except LeaseLost as err:
        raise Refused(f"stopped writing {config.out}: {err}") from None
    finally:
        lease.release()
    summary.wall_seconds = time.time() - started
    return summary


def _score_all(config: ScoreJobConfig, todo: list[CallInput], bundle_files: dict[str, bytes],
               previous: dict[str, IndexRow], writer: PartWriter, summary: ScoreSummary) -> None:
    """Run the pipeline over ``todo``, handing every finished call to ``writer`` (see the module docstring)."""
    import ray

    from jobs.ray_runtime import ensure_ray

    def record(result: CallResult) -> None:
        writer.add(result)
        if result.status == "ok":
            summary.ok += 1
            summary.segments += len(result.probs)
            summary.audio_seconds += result.duration_s or 0.0
        else:
            summary.error += 1
            summary.errors.append((result.call_id, result.error or ""))

    log.info("scoring %d calls with %s", len(todo), summary.model_version)
    ensure_ray(config.ray_address, config.workers)
    workers = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ray.data.DataContext.get_current().max_errored_blocks = config.max_crashed_calls
    retries = config.task_retries
    dataset = ray.data.from_items([{"call_id": c.call_id, "uri": c.uri} for c in todo], override_num_blocks=len(todo))
    scored = dataset.map_batches(
        CallScorer,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))),
        num_cpus=1,
        max_task_retries=retries,
        max_restarts=(retries + 1) * (config.max_crashed_calls + 1) + workers,
        fn_constructor_kwargs={"bundle_files": bundle_files, "scoring": config.scoring, "batch_size": config.batch_size},
    )
    collector = CallCollector(todo)
    with tqdm(total=len(todo), unit="call", desc="score", disable=not config.progress) as bar:
        try:
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                for result in collector.add(batch):
                    record(result)
                    bar.update()
        except KeyboardInterrupt:  # Ctrl-C: what is finished is committed by the caller, the rest keeps what it had
            summary.interrupted = True
            summary.unfinished = len(collector.unfinished())
            return
        except Exception as err:  # the pipeline itself failed: unfinished calls keep what they had
            summary.pipeline_error = brief(err)
            summary.unfinished = len(collector.unfinished())
            log.error("scoring pipeline failed: %s", summary.pipeline_error)
            return
    for call in collector.unfinished():  # their worker died on every attempt: the file itself is the suspect
        if call.uri in previous:
            summary.kept += 1
            log.error("scoring %s crashed its worker %d times; its earlier row is kept", call.uri, retries + 1)
        else:
            record(CallResult(call.call_id, call.uri, "error", f"the scoring worker died on this file {retries + 1} times"))


@click.command("score")
@click.option("--archive", required=True, help="Folder or s3:// prefix of call recordings (searched recursively).")
@click.option("--out", required=True, help="Report folder or s3:// prefix (segments/ and calls/ Parquet).")
@options.date("Output partition [default: today, UTC].")
@click.option("--model", default=None, metavar="MODEL_DIR", help="Model bundle folder [default: the bundled model].")
@click.option("--agent-channel", type=click.IntRange(0, 1), default=0, show_default=True,
              help="Channel of the agent in stereo calls; the other is the customer.")
@click.option("--id-root", default=None, metavar="DIR_OR_S3",
              help="Call ids are paths relative to this [default: the archive, or its parent when it is a YYYY-MM-DD folder].")
@click.option("--force", is_flag=True, help="Rescore calls already scored ok with this model (their rows are replaced).")
@click.option("--actors", "--workers", "workers", type=click.IntRange(min=1), default=None, help="Scoring actors, one CPU each [default: all CPUs].")
@options.ray_address
@click.option("--batch-size", default=256, show_default=True, help="Windows per model call.")
@click.option("--calls-per-part", default=500, show_default=True, help="Calls per Parquet part file.")
@click.option("--max-hours", type=click.FloatRange(min=0, min_open=True), default=ScoringConfig().max_seconds / 3600,
              show_default=True, help="Longest file scored; longer ones get an error row.")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=ScoringConfig().read_timeout_s,
              show_default=True, metavar="SECONDS", help="A file whose read stalls this long gets an error row.")
@click.option("--task-retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Retries of a call whose scoring worker died.")
@click.option("--max-crashed-calls", type=click.IntRange(min=0), default=10, show_default=True,
              help="Calls whose worker died on every try before the job gives up.")
@click.option("--metadata", default=None, metavar="FILE",
              help="CSV or Parquet of contact fields per recording (column path, relative to --archive, or call_id).")
@options.no_progress
@options.refusals
def cli(archive, out, date, model, agent_channel, id_root, force, workers, ray_address, batch_size, calls_per_part,
        max_hours, read_timeout, task_retries, max_crashed_calls, metadata, no_progress) -> None:
    """Score a call archive into Parquet emotion reports (incremental; safe to rerun)."""
    config = ScoreJobConfig(
        archive=archive,
        out=out,
        **({"date": date} if date else {}),
        model=model,
        scoring=ScoringConfig(agent_channel=agent_channel, max_seconds=max_hours * 3600, read_timeout_s=read_timeout),
        force=force,
        workers=workers,
        ray_address=ray_address,
        batch_size=batch_size,
        calls_per_part=calls_per_part,
        progress=not no_progress,
        id_root=id_root,
        task_retries=task_retries,
        max_crashed_calls=max_crashed_calls,
        metadata=metadata,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even when started with SIGINT ignored
    try:
        summary = run_score(config)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    except MetadataError as err:
        raise click.BadParameter(str(err), param_hint="--metadata") from None
    except KeyboardInterrupt:
        click.echo("ser score: interrupted; calls not committed keep their earlier rows; rerun to finish", err=True)
        click.get_current_context().exit(INTERRUPTED)
    click.echo(shown(
        f"{summary.files} files: {summary.ok} ok, {summary.error} error, {summary.skipped} skipped "
        f"(already scored ok by {summary.model_version}); {summary.replaced} older rows replaced; "
        f"{summary.segments} segments, {summary.audio_seconds / 3600:.2f} h of audio, {summary.parts} parts "
        f"under {out} (date={config.date}, run {summary.run_id}); {summary.wall_seconds:.1f} s"
    ))
    if metadata:
        click.echo(f"  metadata: {summary.metadata_rows} rows; {summary.metadata_unmatched} match no recording; "
                   f"{summary.without_metadata} recordings have no row")
    for call_id, reason in summary.errors[:20]:
        click.echo(f"  error {shown(call_id)}: {shown(reason)}")
    if len(summary.errors) > 20:
        click.echo(shown(f"  ... and {len(summary.errors) - 20} more (status = 'error' in {out}/calls)"))
    if summary.kept:
        click.echo(f"  {summary.kept} calls crashed their worker on every try and kept their earlier rows")
    if summary.interrupted:
        click.echo(f"ser score: interrupted; the {summary.ok + summary.error} calls finished are committed, "
                   f"{summary.unfinished} were not scored and keep their earlier rows; rerun to finish them", err=True)
        click.get_current_context().exit(INTERRUPTED)
    if summary.pipeline_error:
        raise click.ClickException(f"scoring pipeline failed ({summary.pipeline_error}); {summary.unfinished} calls "
                                   "were not scored and keep their earlier rows; rerun to finish them")
