"""``ser score``: the nightly call-archive scoring job, Ray Data batch inference to Parquet emotion reports.

Pipeline (Ray Data, streaming; memory stays flat whatever the archive's size and each file's length)::

    load and check the model in the driver ─► take the report prefix's lease ─► recover the store
    list audio files under the archive ──► from_items, one block per call
      ──► map_batches(CallScorer, ActorPoolStrategy(size=workers), batch_size=1)
            ser_core.scoring.scorer.CallScoring per actor (model loaded once): decode block by block to a local
            spool file · VAD and segmentation · windows · inference in batches · yields each scored batch of
            windows as a typed piece as it goes, then the call's end (its facts)
      ──► driver: iter_batches ─► CallCollector (ser_core.scoring.collector) ─► PartWriter ─► ReportStore.commit

Decoding, features and inference share one actor, so feature tensors never cross processes; a long call streams
out in batches of windows. The driver only sees small pieces (times and probabilities).

The report store (``ser_core.reports.store``) owns the output's layout and its state model: what is committed,
what recovery may remove, and the lease that makes one run at a time the writer. This job decides what to score:

* An input is its ``source_uri``; its ``call_id`` is the path relative to the id root without extension (see
  :func:`ser_core.scoring.inputs.id_root`), unique in OUT: a run whose ids would name another file already in OUT is refused.
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
  repeated windows are dropped, and a call is written only once its end and all its windows have arrived.
* Ctrl-C (SIGINT, even where the shell started the job with SIGINT ignored) stops the pipeline: the calls
  finished so far are committed, the lease is released, the job exits with status 130, and the next run
  scores the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import click
import numpy as np
from tqdm import tqdm

from jobs import options
from ser_core.errors import Refused
from ser_core.models.bundle import load_bundle_files
from ser_core.reports.store import IndexRow, Lease, LeaseHeld, LeaseLost, ReportStore, already_scored
from ser_core.scoring.calls import CallResult, ScoringConfig
from ser_core.scoring.collector import CallCollector
from ser_core.scoring.contact_metadata import ContactMetadata, MetadataError, contacts_by_call, read_metadata
from ser_core.scoring.inputs import CallInput, call_id_conflicts, list_calls
from ser_core.scoring.parts import PartWriter
from ser_core.scoring.scorer import CallScoring, checked_bundle
from ser_core.text import brief, shown

log = logging.getLogger(__name__)

INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports a process ended by SIGINT


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


# ------------------------------------------------------------------------------------------ the actor


class CallScorer:
    """Ray Data callable class: one :class:`~ser_core.scoring.scorer.CallScoring` per actor (the bundle loaded once),
    one call per input row, each piece of it one output row (column ``piece``, a typed value)."""

    def __init__(self, bundle_files: dict[str, bytes], scoring: ScoringConfig, batch_size: int, roll=None, threads: int = 1):
        import ray
        import tensorflow as tf

        if roll is not None:  # every incarnation (a restart too) signs the run's roll, so the run can end it
            roll.add.remote(ray.get_runtime_context().current_actor)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.scoring = CallScoring(load_bundle_files(bundle_files, "shipped by the driver"), scoring, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for call_id, uri in zip(batch["call_id"], batch["uri"]):
            for piece in self.scoring.score(str(call_id), str(uri)):
                column = np.empty(1, dtype=object)
                column[0] = piece
                yield {"piece": column}


class ActorRoll:
    """The scoring actors of one run (a Ray actor itself). Ray Data 2.60 lets go of its pool's actors by dropping
    references, and an actor restarted after its worker died can outlive the run holding its CPU; the run ends
    every actor on the roll itself."""

    def __init__(self):
        self.actors: set = set()

    def add(self, actor) -> None:
        self.actors.add(actor)

    def members(self) -> list:
        return list(self.actors)


def end_actors(roll) -> None:
    """Kill every actor on ``roll``, then the roll; a failure here is logged, never raised over the run's outcome."""
    import ray

    try:
        for actor in ray.get(roll.members.remote(), timeout=30):
            ray.kill(actor)
        ray.kill(roll)
    except Exception as err:  # the run's own result matters more than this clean-up
        log.warning("could not end the scoring actors: %s", brief(err))


# ---------------------------------------------------------------------------------------------- the job


def make_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sortable by start time, unique."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def contact_columns(calls: list[CallInput], metadata: ContactMetadata | None, archive: str,
                    summary: ScoreSummary) -> dict[str, dict]:
    """``call_id -> calls columns`` from ``metadata``, counting its rows, those that match no recording and the
    recordings without a row into ``summary``."""
    if metadata is None:
        return {}
    contacts = contacts_by_call([(c.call_id, c.uri) for c in calls], metadata, archive)
    summary.metadata_rows, summary.metadata_unmatched = len(metadata.rows), metadata.unmatched
    summary.without_metadata = len(calls) - len(contacts)
    return contacts


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
            summary.segments += len(result.windows)
            summary.audio_seconds += result.duration_s or 0.0
        else:
            summary.error += 1
            summary.errors.append((result.call_id, result.error or ""))

    log.info("scoring %d calls with %s", len(todo), summary.model_version)
    ensure_ray(config.ray_address, config.workers)
    workers = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    retries = config.task_retries
    roll = ray.remote(num_cpus=0)(ActorRoll).remote()
    scored = _pipeline(config, todo, bundle_files, workers, roll)
    collector = CallCollector(todo)
    with tqdm(total=len(todo), unit="call", desc="score", disable=not config.progress) as bar:
        try:
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                for piece in batch["piece"]:
                    if (result := collector.add(piece)) is not None:
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
        finally:
            end_actors(roll)
    for call in collector.unfinished():  # their worker died on every attempt: the file itself is the suspect
        if call.uri in previous:
            summary.kept += 1
            log.error("scoring %s crashed its worker %d times; its earlier row is kept", call.uri, retries + 1)
        else:
            record(CallResult(call.call_id, call.uri, "error", f"the scoring worker died on this file {retries + 1} times"))


def _pipeline(config: ScoreJobConfig, todo: list[CallInput], bundle_files: dict[str, bytes], workers: int, roll):
    """The Ray Data pipeline: one block per call, up to ``workers`` scoring actors, each piece of a call one row."""
    import ray

    ray.data.DataContext.get_current().max_errored_blocks = config.max_crashed_calls
    retries = config.task_retries
    dataset = ray.data.from_items([{"call_id": c.call_id, "uri": c.uri} for c in todo], override_num_blocks=len(todo))
    return dataset.map_batches(
        CallScorer,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))),
        num_cpus=1,
        max_task_retries=retries,
        max_restarts=(retries + 1) * (config.max_crashed_calls + 1) + workers,
        fn_constructor_kwargs={"bundle_files": bundle_files, "scoring": config.scoring, "batch_size": config.batch_size,
                               "roll": roll},
    )


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
