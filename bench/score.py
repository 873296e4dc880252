"""``ser score`` benchmarks: end-to-end real-time factor per core and peak memory; accuracy through the pipeline.

speed
    Builds 8 kHz stereo call archives with ``ser make-archive`` (synthetic voices unless ``--corpus`` is given):
    a tiny one (one short call: the fixed cost), one of at least ``--hours`` hours (calls of about five minutes),
    one four times larger, and one single call of at least an hour. Each is scored by a fresh ``ser score``
    process (its own local Ray, ``--workers`` actors) while this script samples, every 0.1 s, the CPU time and
    resident memory of that process and all its descendants (Ray's own processes and the scoring actors) from
    ``/proc``. CPU seconds are the larger of the sampled total and the kernel's count for reaped children.
    Real-time factor per core = audio seconds / CPU seconds; "marginal" subtracts the tiny archive's CPU (Ray,
    TensorFlow and model start-up) to show the rate a long nightly run converges to.

memory
    Writes two 48 kHz stereo 16-bit WAV calls, one of ``--short-minutes`` (5) and one of ``--long-hours`` (3), turns
    alternating between the channels with a -30 dB leak, and scores each alone in a fresh ``ser score`` process
    (one worker), sampling resident memory as ``speed`` does. Flat means the long call's peak is within 10 % of
    the short one's, for the scoring actor and for all processes together.

accuracy
    Builds an archive from the ``--split`` (``test``) groups --model held out (speakers it did not train on) through
    the call channel (each turn's level within ±15 dB of its party's, noise floors -60 to -40 dBFS, leak, G.711),
    scores it, and labels each customer turn with the mean probabilities of the customer segments overlapping it
    (call-level; turns no segment overlaps count as misses). Compares that UAR, per source corpus, with the
    clip-level UAR of the same model on the same utterances as clips (``ser predict`` on the source file: the clip
    segmented as a one-turn call). Also: each turn's speech covered by customer segments (median per emotion),
    turns of 0.5 s or more without a segment, and the share of agent windows labelled neutral (agent voices are
    chosen from neutral and happy utterances).

Usage::

    python bench/score.py speed [--hours 1] [--workers 1 --workers 2] [--corpus ravdess=PATH] [--model DIR]
    python bench/score.py memory [--short-minutes 5] [--long-hours 3] [--model DIR]
    python bench/score.py accuracy --corpus ravdess=../shared/corpora/ravdess [--corpus tess=...] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.pop("RAY_ADDRESS", None)

RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------ process tree


def _stat(pid: int) -> tuple[int, float, int]:
    """``(ppid, cpu seconds, rss bytes)`` of ``pid`` from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[21]) * PAGE


def _tree(root: int) -> dict[int, tuple[float, int, str]]:
    """``pid -> (cpu seconds, rss bytes, command)`` for ``root`` and all its descendants."""
    stats, names = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
                names[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
            except (OSError, ValueError, IndexError):
                continue
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[pid] = (stats[pid][1], stats[pid][2], names[pid])
            todo.extend(children.get(pid, []))
    return found


def measure(command: list[str], work: Path) -> dict:
    """Run ``command``; sample its process tree's CPU and memory until it exits. Its last line of output is kept
    with the temporary folder ``work`` written as ``WORK`` (no path of this machine in the results)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    log = tempfile.TemporaryFile(mode="w+")
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    cpu: dict[int, float] = {}
    peak_total, peak_process = 0, {}
    while job.poll() is None:
        tree = _tree(job.pid)
        for pid, (seconds, rss, name) in tree.items():
            cpu[pid] = seconds
            peak_process[name] = max(peak_process.get(name, 0), rss)
        peak_total = max(peak_total, sum(rss for _, rss, _ in tree.values()))
        time.sleep(0.1)
    wall = time.time() - started
    output = job.stdout.read()
    if job.returncode:
        log.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed ({job.returncode}):\n{output}\n{log.read()[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    scorer = max((rss for name, rss in peak_process.items() if "CallScorer" in name), default=0)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(max(sum(cpu.values()), reaped), 2),
        "cpu_sampled_s": round(sum(cpu.values()), 2),
        "cpu_reaped_s": round(reaped, 2),
        "peak_rss_total_mb": round(peak_total / 2**20),
        "peak_rss_scorer_actor_mb": round(scorer / 2**20),
        "peak_rss_driver_mb": round(max((rss for name, rss in peak_process.items() if "score" in name and "ray::" not in name), default=0) / 2**20),
        "output": output.strip().splitlines()[-1].replace(str(work), "WORK") if output.strip() else "",
    }


# ---------------------------------------------------------------------------------------------- archives


def build(out: Path, corpora: list[str], calls: int, customer_turns: int, seed: int) -> float:
    """An archive via ``make_archive``; returns its hours of audio."""
    from ser_core.audio.call_archive import ArchiveConfig, make_archive
    from ser_core.corpora import parse_corpus_option

    config = ArchiveConfig(out=str(out), corpora=tuple(map(parse_corpus_option, corpora)), calls=calls, customer_turns=customer_turns,
                           split="all", date="2026-11-23", seed=seed)
    return make_archive(config).audio_seconds / 3600


def archive_of(work: Path, name: str, corpora: list[str], hours: float, call_minutes: float, seed: int,
               calls: int | None = None) -> tuple[Path, float]:
    """Calls of about ``call_minutes`` adding up to at least ``hours``; with ``calls``, that many calls, lengthened."""
    probe_turns = 20
    probe = build(work / f"probe-{name}", corpora, calls=1, customer_turns=probe_turns, seed=seed)
    turns = max(1, int(np.ceil(1.1 * probe_turns * call_minutes / (probe * 60))))
    n_calls = calls or max(1, int(np.ceil(hours * 60 / call_minutes)))
    made = build(work / name, corpora, calls=n_calls, customer_turns=turns, seed=seed)
    while made < hours:
        if calls:
            turns = int(np.ceil(turns * 1.05 * hours / made))
        else:
            n_calls = int(np.ceil(n_calls * hours / made)) + 1
        made = build(work / name, corpora, calls=n_calls, customer_turns=turns, seed=seed)
    return work / name / "audio", made


def score_command(archive: Path, out: Path, workers: int, model: str | None) -> list[str]:
    command = [sys.executable, "-m", "jobs.cli", "score", "--archive", str(archive), "--out", str(out),
               "--workers", str(workers), "--date", "2026-11-23", "--no-progress"]
    return command + (["--model", model] if model else [])


def speed(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    archives = {
        "tiny": (work / "tiny" / "audio", build(work / "tiny", args.corpus, calls=1, customer_turns=2, seed=9)),
        f"{args.hours:g}h": archive_of(work, "small", args.corpus, args.hours, 5.0, seed=1),
        f"{4 * args.hours:g}h": archive_of(work, "large", args.corpus, 4 * args.hours, 5.0, seed=2),
        "one-hour-call": archive_of(work, "long", args.corpus, 1.0, 60.0, seed=3, calls=1),
    }
    runs = []
    for name, (archive, hours) in archives.items():
        for workers in args.workers:
            result = measure(score_command(archive, work / f"out-{name}-{workers}", workers, args.model), work)
            runs.append({"archive": name, "audio_hours": round(hours, 3), "workers": workers, **result})
            print(json.dumps(runs[-1]), flush=True)
    print(f"archives and reports kept in {work}", flush=True)
    return {"runs": runs, "summary": summarise(runs, args.hours)}


def summarise(runs: list[dict], hours: float) -> dict:
    """Per worker count: start-up CPU, end-to-end RTF per core for both archives, the steady-state RTF per core
    (extra audio over extra CPU between the two archives, start-up cancelling out) and peak memory of both."""
    by = {(r["archive"], r["workers"]): r for r in runs}
    small, large = f"{hours:g}h", f"{4 * hours:g}h"
    summary = {}
    for workers in sorted({r["workers"] for r in runs}):
        a, b, tiny, long = by[small, workers], by[large, workers], by["tiny", workers], by["one-hour-call", workers]
        summary[f"{workers} workers"] = {
            "startup_cpu_s": tiny["cpu_s"],
            f"rtf_per_core_{small}": round(a["audio_hours"] * 3600 / a["cpu_s"]),
            f"rtf_per_core_{large}": round(b["audio_hours"] * 3600 / b["cpu_s"]),
            "rtf_per_core_steady_state": round((b["audio_hours"] - a["audio_hours"]) * 3600 / (b["cpu_s"] - a["cpu_s"])),
            f"rtf_wall_{large}": round(b["audio_hours"] * 3600 / b["wall_s"]),
            f"peak_rss_total_mb_{small}": a["peak_rss_total_mb"],
            f"peak_rss_total_mb_{large}": b["peak_rss_total_mb"],
            f"peak_rss_scorer_actor_mb_{small}": a["peak_rss_scorer_actor_mb"],
            f"peak_rss_scorer_actor_mb_{large}": b["peak_rss_scorer_actor_mb"],
            "one_hour_call_rtf_per_core": round(long["audio_hours"] * 3600 / long["cpu_s"]),
            "one_hour_call_peak_rss_scorer_actor_mb": long["peak_rss_scorer_actor_mb"],
        }
    return summary


# ----------------------------------------------------------------------------------------------- memory


def write_long_call(path: Path, seconds: float, rate: int = 48000, turn_s: float = 8.0, block_s: float = 60.0) -> float:
    """A stereo call of ``seconds`` written block by block: voiced turns alternate between the channels (each
    leaking 30 dB down into the other) over faint noise; returns its length in seconds."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    leak = 10 ** (-30 / 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = int(seconds * rate)
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as out:
        for start in range(0, total, int(block_s * rate)):
            t = (start + np.arange(min(int(block_s * rate), total - start))) / rate
            turn = (t // turn_s).astype(int) % 2
            pitch = np.where(turn == 0, 120.0, 210.0) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
            voice = sum(np.sin(2 * np.pi * k * pitch * t) / k for k in range(1, 6))
            voice *= np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5 * (t % turn_s < 0.8 * turn_s) * 0.25
            agent, customer = voice * (turn == 0), voice * (turn == 1)
            noise = 1e-3 * rng.standard_normal((2, t.size))
            out.write(np.stack([agent + leak * customer, customer + leak * agent], axis=1) + noise.T)
    return total / rate


def memory(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    runs = {}
    for name, seconds in (("short", args.short_minutes * 60), ("long", args.long_hours * 3600)):
        archive = work / name / "audio"
        length = write_long_call(archive / f"c-{name}.wav", seconds)
        result = measure(score_command(archive, work / f"out-{name}", 1, args.model), work)
        runs[name] = {"audio_hours": round(length / 3600, 3), "file_mb": round((archive / f"c-{name}.wav").stat().st_size / 2**20), **result}
        print(json.dumps(runs[name]), flush=True)
    short, long = runs["short"], runs["long"]
    ratios = {key: round(long[key] / short[key], 3) for key in ("peak_rss_scorer_actor_mb", "peak_rss_total_mb", "peak_rss_driver_mb")}
    shutil.rmtree(work)  # gigabytes of audio
    return {"runs": runs, "long_over_short": ratios, "flat_within_10_percent": all(r <= 1.10 for r in ratios.values())}


# --------------------------------------------------------------------------------------------- accuracy


def covered(segments, start: float, end: float) -> float:
    """Share of ``[start, end)`` covered by the union of the segments' spans."""
    spans = sorted((max(start, a), min(end, b)) for a, b in zip(segments["start_s"], segments["end_s"]) if b > start and a < end)
    total, reach = 0.0, start
    for a, b in spans:
        total += max(0.0, b - max(a, reach))
        reach = max(reach, b)
    return total / (end - start)


def accuracy(args) -> dict:
    import duckdb
    import pandas as pd

    from ser_core.audio.call_archive import ArchiveConfig, make_archive
    from ser_core.corpora import parse_corpus_option
    from ser_core.labels import EMOTIONS
    from ser_core.models.bundle import load_bundle
    from ser_core.scoring.predict import predict_file
    from ser_core.training.metrics import NO_SPEECH, classification_report

    work = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    made = make_archive(ArchiveConfig(out=str(work / "archive"), corpora=tuple(map(parse_corpus_option, args.corpus)), split=args.split, model=args.model,
                                      date="2026-11-23", seed=0))
    run = measure(score_command(work / "archive" / "audio", work / "reports", 2, args.model), work)
    truth = pd.read_parquet(work / "archive" / "ground_truth.parquet")
    customer = truth[truth["role"] == "customer"].reset_index(drop=True)
    segments = duckdb.sql(f"SELECT * FROM read_parquet('{work}/reports/segments/*/*.parquet')").df()
    agent = segments[segments["speaker_role"] == "agent"]
    segments = segments[segments["speaker_role"] == "customer"]
    prob_columns = [f"prob_{e}" for e in EMOTIONS]
    by_call = dict(tuple(segments.groupby("call_id")))
    pipeline, coverage = [], []
    for turn in customer.itertuples():
        mine = by_call.get(turn.call_id, segments.iloc[:0])
        overlapping = mine[(mine["start_s"] < turn.end_s) & (mine["end_s"] > turn.start_s)]
        mean = overlapping[prob_columns].to_numpy().mean(axis=0) if len(overlapping) else None
        pipeline.append(EMOTIONS[int(mean.argmax())] if mean is not None else NO_SPEECH)
        coverage.append(covered(overlapping, turn.start_s, turn.end_s))

    bundle = load_bundle(args.model)
    clip = [predict_file(bundle, uri)["emotion"] or NO_SPEECH for uri in customer["source_uri"]]
    customer["coverage"] = coverage
    through = classification_report(list(customer["emotion"]), pipeline, EMOTIONS)
    clips = classification_report(list(customer["emotion"]), clip, EMOTIONS)
    per_corpus = {}
    for corpus, turns in customer.groupby("corpus"):
        truth_labels = list(turns["emotion"])
        per_corpus[corpus] = {
            "customer_turns": len(turns),
            "call_uar": classification_report(truth_labels, [pipeline[i] for i in turns.index], EMOTIONS)["uar"],
            "clip_uar": classification_report(truth_labels, [clip[i] for i in turns.index], EMOTIONS)["uar"],
        }
    long_turns = customer[customer["end_s"] - customer["start_s"] >= 0.5]
    return {
        "model_version": bundle.version,
        "corpora": args.corpus,
        "split": args.split,
        "archive": {"calls": made.calls, "customer_turns": len(customer), "audio_hours": round(made.audio_seconds / 3600, 3)},
        "turns_without_segment": int(sum(p == NO_SPEECH for p in pipeline)),
        "turns_of_0_5_s_or_more_without_segment": int((long_turns["coverage"] == 0).sum()),
        "median_coverage_per_emotion": {e: round(float(g.median()), 3) for e, g in customer.groupby("emotion")["coverage"]},
        "agent_windows_neutral_share": round(float((agent["emotion"] == "neutral").mean()), 3) if len(agent) else None,
        "call_uar": through["uar"],
        "clip_uar": clips["uar"],
        "difference_points": round(100 * (through["uar"] - clips["uar"]), 1),
        "within_5_points": abs(through["uar"] - clips["uar"]) <= 0.05,
        "per_corpus": per_corpus,
        "call_report": through,
        "clip_report": clips,
        "score_run": run,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "memory", "accuracy"])
    parser.add_argument("--corpus", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--model", default=None, help="Model bundle folder [default: the bundled model].")
    parser.add_argument("--hours", type=float, default=1.0, help="Speed: the smaller archive's hours (the larger has 4x).")
    parser.add_argument("--workers", type=int, action="append", default=None, help="Speed: worker counts [default: 1 and 2].")
    parser.add_argument("--short-minutes", type=float, default=5.0, help="Memory: the short call's minutes.")
    parser.add_argument("--long-hours", type=float, default=3.0, help="Memory: the long call's hours.")
    parser.add_argument("--split", default="test", choices=["test", "validation"],
                        help="Accuracy: the held-out split of --model the customers come from (validation to choose, test to report).")
    parser.add_argument("--out", default=None, help="Results JSON [default: bench/results/score_<mode>.json].")
    args = parser.parse_args()
    args.workers = args.workers or [1, 2]
    if args.mode == "accuracy" and not args.corpus:
        parser.error("accuracy needs --corpus (real labelled speech)")
    result = {"speed": speed, "memory": memory, "accuracy": accuracy}[args.mode](args)
    result.update({
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "command": " ".join(sys.argv),
        "model": args.model or "bundled",
    })
    out = Path(args.out or RESULTS / f"score_{args.mode}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("pipeline_report", "clip_report")}, indent=2))


if __name__ == "__main__":
    main()
