"""Extraction throughput: the classic notebook recipe vs ``ser extract`` with one and two Ray workers.

Audio-seconds per CPU-core-second on the same real files (RAVDESS and TESS from ../shared/corpora), each
with three augmented copies per file:

(a) the classic SER notebook, reimplemented: per-file ``librosa.load`` at 22 050 Hz, a 2.5 s crop from
    0.6 s, ZCR + RMS + MFCC flattened, for the original and three copies (noise, pitch shift, both), in one
    process; its figure is audio seconds over its own CPU time.
(b) ``run_extract`` with ``--augment 3`` on a local Ray with 1 and with 2 CPUs; its figure is audio seconds
    over wall time times workers (every core the job holds counts, busy or not). Ray is started and its
    workers warmed before timing; Parquet writes and manifest handling are included.

Usage: python bench/extract.py [--files N] [--out bench/results/extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def pick_files(n: int) -> list[Path]:
    """Half RAVDESS, half TESS, spread over speakers and emotions, deterministic."""
    rav = sorted((CORPORA / "ravdess").rglob("*.flac"))
    tess = sorted((CORPORA / "tess").rglob("*.flac"))
    return rav[:: max(1, len(rav) // (n // 2))][: n // 2] + tess[:: max(1, len(tess) // (n - n // 2))][: n - n // 2]


def notebook_features(y: np.ndarray, sr: int) -> np.ndarray:
    zcr = librosa.feature.zero_crossing_rate(y)
    rms = librosa.feature.rms(y=y)
    mfcc = librosa.feature.mfcc(y=y, sr=sr)
    return np.hstack([zcr.ravel(), rms.ravel(), mfcc.ravel()])


def run_notebook(files: list[Path]) -> float:
    """CPU seconds of the notebook recipe over ``files`` (original + 3 copies each), BLAS on one thread like a Ray task."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        return _notebook_loop(files, rng)


def _notebook_loop(files: list[Path], rng: np.random.Generator) -> float:
    started = time.process_time()
    for path in files:
        y, sr = librosa.load(path, sr=22050, offset=0.6, duration=2.5)
        noisy = y + 0.035 * rng.uniform() * np.max(y) * rng.normal(size=y.shape)
        pitched = librosa.effects.pitch_shift(y, sr=sr, n_steps=0.7)
        both = librosa.effects.pitch_shift(noisy, sr=sr, n_steps=0.7)
        for variant in (y, noisy, pitched, both):
            notebook_features(variant, sr)
    return time.process_time() - started


def run_job(files: list[Path], workers: int, workdir: Path) -> float:
    """Wall seconds of ``run_extract`` over ``files`` with ``workers`` local Ray CPUs (after a warm-up run)."""
    import ray

    from jobs.extract import ExtractJobConfig, run_extract
    from ser_core.corpora.splits import SplitConfig
    from ser_core.frontends.featurize import ExtractConfig

    csv = workdir / f"bench-{workers}.csv"
    csv.write_text("path,emotion,speaker\n" + "".join(f"{p},neutral,s{i}\n" for i, p in enumerate(files)))
    ray.init(address="local", num_cpus=workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        # Every utterance in train so that each gets its three copies, as in the notebook.
        config = dict(extract=ExtractConfig(augment_copies=3), splits=SplitConfig(validation=0.0, test=0.0),
                      shard_size=max(4, len(files) // (4 * workers)), progress=False)
        run_extract(ExtractJobConfig(corpora=(("manifest", str(csv)),), out=str(workdir / f"warm-{workers}"), **{**config, "shard_size": 2}))
        started = time.perf_counter()
        run_extract(ExtractJobConfig(corpora=(("manifest", str(csv)),), out=str(workdir / f"out-{workers}"), **config))
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def _job_in_fresh_process(n_files: int, workers: int, workdir: Path) -> float:
    """Each Ray configuration runs in its own process, so no Ray instance outlives its measurement."""
    command = [sys.executable, __file__, "--files", str(n_files), "--job-workers", str(workers), "--workdir", str(workdir)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "extract.json"))
    parser.add_argument("--job-workers", type=int, help=argparse.SUPPRESS)  # internal: one job run in a fresh process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = pick_files(args.files)
    if args.job_workers:
        print(json.dumps({"wall_s": run_job(files, args.job_workers, Path(args.workdir))}))
        return
    audio_seconds = sum(sf.info(p).duration for p in files)
    workdir = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        run_notebook(files[:4])  # numba JIT warm-up, not timed
        notebook_cpu = run_notebook(files)
        job_wall = {w: _job_in_fresh_process(args.files, w, workdir) for w in (1, 2)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    per_core = {
        "notebook": audio_seconds / notebook_cpu,
        "job_1_worker": audio_seconds / job_wall[1],
        "job_2_workers": audio_seconds / (job_wall[2] * 2),
    }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "files": len(files),
        "audio_seconds": round(audio_seconds, 1),
        "augmented_copies_per_file": 3,
        "notebook_cpu_s": round(notebook_cpu, 2),
        "job_wall_s": {str(k): round(v, 2) for k, v in job_wall.items()},
        "audio_s_per_core_s": {k: round(v, 1) for k, v in per_core.items()},
        "speedup_per_core_1_worker_vs_notebook": round(per_core["job_1_worker"] / per_core["notebook"], 2),
        "two_workers_vs_one": round(job_wall[1] / job_wall[2], 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
