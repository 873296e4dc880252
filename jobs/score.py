"""``ser score``: the nightly call-archive scoring job, Ray Data batch inference to Parquet emotion reports.

Pipeline (Ray Data, streaming; memory stays flat whatever the archive's size)::

    list audio files under the archive ──► from_items, one block per call
      ──► map_batches(CallScorer, ActorPoolStrategy(size=workers), batch_size=1)
            decode (channels kept, model rate) · VAD · frame features once per speech region ·
            windows sliced from the frame matrix · model inference in batches (model loaded once per actor)
            yields segment rows as it goes, then one call row per call (its facts and window count)
      ──► driver: iter_batches ─► per-call collection ─► summary row ─► Parquet parts, written atomically

Decoding, features and inference share one actor, so feature tensors never cross processes; a long call streams
out in batches of windows. The driver only sees small rows (times and probabilities).

Output (local folder or ``s3://`` prefix)::

    OUT/segments/date=YYYY-MM-DD/part-<run_id>-<n>.parquet   one row per scored window (schema.SEGMENTS)
    OUT/calls/date=YYYY-MM-DD/part-<run_id>-<n>.parquet      one row per input file (schema.CALLS)

Semantics that make nightly reruns safe:

* A part is a group of completed calls: its segments file is written first, its calls file (same name) last; each
  write is atomic (temp + rename locally, one PUT on S3). A calls file therefore commits its calls.
* At start, the job recovers from any earlier crash: segments files without their calls twin are deleted (a part
  that never committed), and a call present in several calls files (a replacement that was interrupted) keeps only
  its latest row, its older rows being removed from their parts (segments twin first, then calls file).
* A call already ``ok`` with the same model version is skipped; everything else (new, failed, scored by another
  model, or all with ``--force``) is scored and its older rows are removed from their parts once the new part has
  committed. OUT thus holds exactly one calls row per call, and a rerun after a crash or kill completes the rest.
* Ray retries the work of a killed worker; the driver keys windows by (call, window number) so a retried task's
  repeated rows are dropped, and a call is written only once its call row and all its windows have arrived.
* Bad input is data: a file that cannot be decoded gets a calls row with status ``error`` and the reason; if the
  pipeline itself fails, calls still in flight get error rows too (a rerun retries them) and the job exits non-zero.

One writer per OUT at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ser_core import storage
from ser_core.audio import AudioDecodeError, decode
from ser_core.calls import CallResult, ScoringConfig, WindowBatch, call_windows, speaker_role, speech_seconds, summarise_call, window_labels
from ser_core.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.model import BUNDLE_FILE, BundleError, read_bundle_files
from ser_core.schema import CALLS, SEGMENTS
from ser_core.vad import speech_regions

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".aif", ".aiff")
CALL_ROW = -1  # ``seq`` of the row that closes a call in the pipeline's output
INDEX_COLUMNS = ["call_id", "status", "model_version", "scored_at", "run_id"]


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


@dataclass
class ScoreSummary:
    """What one run did; every input file is counted once in ``ok``, ``error`` or ``skipped``."""

    files: int = 0
    ok: int = 0
    error: int = 0
    skipped: int = 0
    replaced: int = 0
    segments: int = 0
    parts: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    model_version: str = ""
    run_id: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    pipeline_error: str | None = None


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CallInput:
    call_id: str
    uri: str


def list_calls(archive: str) -> list[CallInput]:
    """Every audio file under ``archive`` with its call id: the relative path without extension.

    Two files that differ only by extension (``c-1.wav``, ``c-1.flac``) keep their extensions in their ids.
    """
    if not storage.exists(archive):
        raise FileNotFoundError(f"archive {archive} does not exist")
    uris = storage.list_files(archive, AUDIO_EXTENSIONS)
    relative = [storage.relative_to(uri, archive) for uri in uris]
    stems = [posixpath.splitext(rel)[0] for rel in relative]
    taken = Counter(stems)
    return [CallInput(stem if taken[stem] == 1 else rel, uri) for uri, rel, stem in zip(uris, relative, stems)]


# ------------------------------------------------------------------------------------------ the actor


class CallScorer:
    """Ray Data callable class: scores one call per input row, yielding segment rows and then the call's row."""

    def __init__(self, bundle_files: dict[str, bytes], scoring: ScoringConfig, batch_size: int, threads: int = 1):
        import tensorflow as tf

        from ser_core.model import load_bundle_files

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.bundle = load_bundle_files(bundle_files, "shipped by the driver")
        self.scoring = scoring
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for call_id, uri in zip(batch["call_id"], batch["uri"]):
            yield from self.score(str(call_id), str(uri))

    def score(self, call_id: str, uri: str) -> Iterator[dict[str, np.ndarray]]:
        """Rows for one call: batches of scored windows, then one row (``seq`` -1) with the call's facts."""
        spec = self.bundle.spec
        facts: dict = {"status": "ok", "error": None}
        scored = 0
        try:
            audio = decode(uri, target_rate=spec.sample_rate, mono=False)
            regions = speech_regions(audio.samples, spec, self.scoring.vad)
            facts.update(duration_s=audio.duration_s, sample_rate=audio.source_rate, channels=audio.source_channels,
                         speech_s=[speech_seconds(r, spec) for r in regions])
            for group in _batches(call_windows(audio.samples, regions, spec, self.scoring), self.batch_size):
                yield self._predict(call_id, group, scored)
                scored += sum(len(chunk.windows) for chunk in group)
        except AudioDecodeError as err:
            facts.update(status="error", error=err.reason)
        except Exception as err:  # a file must never crash the job: any failure becomes the call's error row
            log.exception("scoring %s failed", uri)
            facts.update(status="error", error=f"scoring failed: {brief(err)}")
        facts["windows"] = scored
        yield _rows(call_id, seq=np.array([CALL_ROW]), channel=np.zeros(1, np.int32), start_s=np.zeros(1), end_s=np.zeros(1),
                    rms_db=np.zeros(1, np.float32), probs=np.zeros((1, len(EMOTIONS)), np.float32),
                    call=json.dumps({"source_uri": uri, **facts}))

    def _predict(self, call_id: str, chunks: list[WindowBatch], first_seq: int) -> dict[str, np.ndarray]:
        probs = self.bundle.predict(np.concatenate([c.windows for c in chunks]), batch_size=self.batch_size)
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

    def unfinished(self, reason: str) -> list[CallResult]:
        """Error results for every call not completed (after the pipeline failed)."""
        return [CallResult(call_id, uri, "error", reason) for call_id, uri in self.uris.items() if call_id not in self.done]

    def _result(self, call_id: str, part: _PartialCall) -> CallResult:
        facts = part.facts
        result = CallResult(call_id, facts["source_uri"], facts["status"], facts["error"], facts.get("duration_s"),
                            facts.get("sample_rate"), facts.get("channels"), facts.get("speech_s", []))
        if facts["status"] == "ok" and part.batches:
            merged = {k: np.concatenate([b[k] for b in part.batches]) for k in part.batches[0]}
            order = np.argsort(merged["seq"])
            result.channel, result.start_s, result.end_s = merged["channel"][order], merged["start_s"][order], merged["end_s"][order]
            result.rms_db, result.probs = merged["rms_db"][order], merged["probs"][order]
        return result


# ------------------------------------------------------------------------------------------ the store


def _calls_dir(out: str) -> str:
    return storage.join(out, "calls")


def _segments_dir(out: str) -> str:
    return storage.join(out, "segments")


def remove_calls_from_part(out: str, part: str, call_ids: set[str]) -> None:
    """Rewrite one part without ``call_ids``: its segments file first, then its calls file (which commits it)."""
    calls_uri, segments_uri = storage.join(_calls_dir(out), part), storage.join(_segments_dir(out), part)
    for uri, schema in ((segments_uri, SEGMENTS), (calls_uri, CALLS)):
        if not storage.exists(uri):
            continue
        table = storage.read_parquet(uri)
        keep = pc.invert(pc.is_in(table.column("call_id"), pa.array(sorted(call_ids), pa.string())))
        remaining = table.filter(keep)
        if remaining.num_rows == table.num_rows:
            continue
        if uri == calls_uri and remaining.num_rows == 0:
            storage.remove(segments_uri)
            storage.remove(calls_uri)
        else:
            storage.write_parquet_atomic(remaining.cast(schema), uri)


def load_index(out: str) -> dict[str, list[dict]]:
    """Every calls row in ``out`` as ``call_id -> [{status, model_version, scored_at, run_id, part}, ...]``."""
    index: dict[str, list[dict]] = {}
    folder = _calls_dir(out)
    for part in sorted(storage.parquet_files(folder)):
        fs, path = storage.filesystem(storage.join(folder, part))
        for row in pq.read_table(path, filesystem=fs, columns=INDEX_COLUMNS).to_pylist():
            index.setdefault(row["call_id"], []).append({**row, "part": part})
    return index


def recover(out: str) -> dict[str, dict]:
    """Repair what a crash may have left in ``out``; return each call's single remaining row (with its part).

    Removes local temporary files, segments files whose calls file never committed, and all but the latest row
    of any call found in several parts.
    """
    if not storage.is_remote(out):
        for folder in (_calls_dir(out), _segments_dir(out)):
            fs, path = storage.filesystem(folder)
            for leftover in (p for p in (fs.find(path) if fs.exists(path) else []) if ".tmp-" in posixpath.basename(p)):
                fs.rm(leftover)
    for orphan in sorted(storage.parquet_files(_segments_dir(out)) - storage.parquet_files(_calls_dir(out))):
        log.warning("removing %s: its calls file was never written (interrupted run)", orphan)
        storage.remove(storage.join(_segments_dir(out), orphan))
    latest: dict[str, dict] = {}
    stale: dict[str, set[str]] = {}
    for call_id, rows in load_index(out).items():
        rows = sorted(rows, key=lambda r: (r["scored_at"], r["run_id"]))
        latest[call_id] = rows[-1]
        for row in rows[:-1]:
            stale.setdefault(row["part"], set()).add(call_id)
    for part, call_ids in sorted(stale.items()):
        log.warning("removing %d superseded calls from %s (interrupted replacement)", len(call_ids), part)
        remove_calls_from_part(out, part, call_ids)
    return latest


class PartWriter:
    """Buffers completed calls and writes them as parts; then removes the rows they replace from older parts."""

    def __init__(self, out: str, date: str, run_id: str, model_version: str, scoring: ScoringConfig,
                 previous: dict[str, dict], calls_per_part: int):
        self.out, self.date, self.run_id, self.model_version = out, date, run_id, model_version
        self.scoring, self.previous, self.calls_per_part = scoring, previous, calls_per_part
        self.buffer: list[CallResult] = []
        self.parts = 0
        self.replaced = 0

    def add(self, result: CallResult) -> None:
        self.buffer.append(result)
        if len(self.buffer) >= self.calls_per_part:
            self.flush()

    def flush(self) -> None:
        """Write the buffered calls as one part (segments, then calls), then drop their older rows elsewhere."""
        if not self.buffer:
            return
        scored_at = dt.datetime.now(dt.timezone.utc)
        name = f"date={self.date}/part-{self.run_id}-{self.parts:05d}.parquet"
        storage.write_parquet_atomic(self._segments(scored_at), storage.join(_segments_dir(self.out), name))
        storage.write_parquet_atomic(self._calls(scored_at), storage.join(_calls_dir(self.out), name))
        self.parts += 1
        stale: dict[str, set[str]] = {}
        for result in self.buffer:
            old = self.previous.pop(result.call_id, None)
            if old is not None:
                stale.setdefault(old["part"], set()).add(result.call_id)
        for part, call_ids in sorted(stale.items()):
            remove_calls_from_part(self.out, part, call_ids)
            self.replaced += len(call_ids)
        self.buffer = []

    def _run_columns(self, n: int, scored_at: dt.datetime) -> dict:
        return {"model_version": [self.model_version] * n, "run_id": [self.run_id] * n, "scored_at": [scored_at] * n}

    def _calls(self, scored_at: dt.datetime) -> pa.Table:
        rows = [summarise_call(r, self.scoring) for r in self.buffer]
        columns = {name: [row.get(name) for row in rows] for name in CALLS.names}
        columns.update(self._run_columns(len(rows), scored_at))
        return pa.table(columns, schema=CALLS)

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
            "speaker_role": [speaker_role(int(c), r.channels, agent) for r in scored for c in r.channel],
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


def run_score(config: ScoreJobConfig) -> ScoreSummary:
    """Run the scoring job and return its summary (see the module docstring for the semantics)."""
    import ray

    from jobs.ray_runtime import ensure_ray

    started = time.time()
    try:
        bundle_files = read_bundle_files(config.model)
    except BundleError as err:
        raise click.ClickException(str(err)) from None
    info = json.loads(bundle_files[BUNDLE_FILE])
    spec = FeatureSpec.from_dict(info["feature_spec"])
    summary = ScoreSummary(model_version=info["model_version"], run_id=make_run_id())
    calls = list_calls(config.archive)
    summary.files = len(calls)
    previous = recover(config.out)
    todo = [c for c in calls if config.force or not _done(previous.get(c.call_id), summary.model_version)]
    summary.skipped = len(calls) - len(todo)
    writer = PartWriter(config.out, config.date, summary.run_id, summary.model_version, config.scoring, previous,
                        config.calls_per_part)
    collector = CallCollector(todo)

    def record(result: CallResult) -> None:
        writer.add(result)
        if result.status == "ok":
            summary.ok += 1
            summary.segments += len(result.probs)
            summary.audio_seconds += result.duration_s or 0.0
        else:
            summary.error += 1
            summary.errors.append((result.call_id, result.error or ""))

    if todo:
        log.info("scoring %d calls with %s (feature spec %s)", len(todo), summary.model_version, spec.version)
        ensure_ray(config.ray_address, config.workers)
        workers = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = ray.data.from_items([{"call_id": c.call_id, "uri": c.uri} for c in todo], override_num_blocks=len(todo))
        scored = dataset.map_batches(
            CallScorer,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))),
            num_cpus=1,
            fn_constructor_kwargs={"bundle_files": bundle_files, "scoring": config.scoring, "batch_size": config.batch_size},
        )
        with tqdm(total=len(todo), unit="call", desc="score", disable=not config.progress) as bar:
            try:
                for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                    for result in collector.add(batch):
                        record(result)
                        bar.update()
            except Exception as err:  # the pipeline itself failed: account for every call still in flight
                summary.pipeline_error = brief(err)
                log.error("scoring pipeline failed: %s", summary.pipeline_error)
                for result in collector.unfinished(f"scoring pipeline failed before this call finished: {summary.pipeline_error}"):
                    record(result)
    writer.flush()
    summary.parts, summary.replaced = writer.parts, writer.replaced
    summary.wall_seconds = time.time() - started
    return summary


def _done(previous: dict | None, model_version: str) -> bool:
    return previous is not None and previous["status"] == "ok" and previous["model_version"] == model_version


def parse_date_option(_ctx, _param, value: str | None) -> str | None:
    """Click callback: a ``YYYY-MM-DD`` date, normalised, or ``None``."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


@click.command("score")
@click.option("--archive", required=True, help="Folder or s3:// prefix of call recordings (searched recursively).")
@click.option("--out", required=True, help="Report folder or s3:// prefix (segments/ and calls/ Parquet).")
@click.option("--date", callback=parse_date_option, default=None, metavar="YYYY-MM-DD", help="Output partition [default: today, UTC].")
@click.option("--model", default=None, metavar="MODEL_DIR", help="Model bundle folder [default: the bundled model].")
@click.option("--agent-channel", type=click.IntRange(0, 1), default=0, show_default=True,
              help="Channel of the agent in stereo calls; the other is the customer.")
@click.option("--force", is_flag=True, help="Rescore calls already scored ok with this model (their rows are replaced).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Scoring actors, one CPU each [default: all CPUs].")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Join this Ray cluster instead of starting one.")
@click.option("--batch-size", default=256, show_default=True, help="Windows per model call.")
@click.option("--calls-per-part", default=500, show_default=True, help="Calls per Parquet part file.")
@click.option("--no-progress", is_flag=True)
def cli(archive, out, date, model, agent_channel, force, workers, ray_address, batch_size, calls_per_part, no_progress) -> None:
    """Score a call archive into Parquet emotion reports (incremental; safe to rerun)."""
    config = ScoreJobConfig(
        archive=archive,
        out=out,
        **({"date": date} if date else {}),
        model=model,
        scoring=ScoringConfig(agent_channel=agent_channel),
        force=force,
        workers=workers,
        ray_address=ray_address,
        batch_size=batch_size,
        calls_per_part=calls_per_part,
        progress=not no_progress,
    )
    try:
        summary = run_score(config)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    click.echo(
        f"{summary.files} files: {summary.ok} ok, {summary.error} error, {summary.skipped} skipped "
        f"(already scored ok by {summary.model_version}); {summary.replaced} older rows replaced; "
        f"{summary.segments} segments, {summary.audio_seconds / 3600:.2f} h of audio, {summary.parts} parts "
        f"under {out} (date={config.date}, run {summary.run_id}); {summary.wall_seconds:.1f} s"
    )
    for call_id, reason in summary.errors[:20]:
        click.echo(f"  error {call_id}: {reason}")
    if len(summary.errors) > 20:
        click.echo(f"  ... and {len(summary.errors) - 20} more (status = 'error' in {out}/calls)")
    if summary.pipeline_error:
        raise click.ClickException(f"scoring pipeline failed ({summary.pipeline_error}); rerun to finish the remaining calls")
