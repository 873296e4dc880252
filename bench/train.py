"""Training benchmarks: ``ser train`` wall time and peak memory with 1 and 2 workers; the classic notebook recipe's honest figure.

job
    Runs ``ser train`` from cached features (``ser extract --augment 4``) in a fresh process with its own local
    Ray, once per ``--workers`` value, while sampling the memory of that process and all its descendants (Ray's
    processes and the training workers) every 0.5 s. Records wall time, peak summed RSS (counts object-store pages
    once per process mapping them, so it overstates), peak summed PSS, and the bundle's validation/test figures.

classic
    The classic SER notebook recipe on the same split: ``librosa.load`` at 22 050 Hz, a 2.5 s crop from 0.6 s,
    ZCR + RMS + 20 MFCC frames flattened (2376 values; ``bench/extract.py``'s ``notebook_features``), four
    augmented copies per training file (noise, pitch +0.7 semitones, both, time stretch 0.8) kept on the train
    side, standard scaling. The notebook's Conv1D stack costs about 0.5 GMAC per example, hours per epoch
    budget on two cores, so the classifier is a dense network (256-128, dropout 0.3) for ``--epochs`` epochs,
    selected on the validation split; the figure reported is the test split (speaker-disjoint for RAVDESS,
    word-disjoint for TESS), one vector per utterance.

Usage::

    python bench/train.py job --features FEATURES [--workers 1 --workers 2] [--epochs 40] [--out-dir DIR] [--machine TEXT]
    python bench/train.py classic --features FEATURES [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import notebook_features  # noqa: E402  (bench/extract.py)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.pop("RAY_ADDRESS", None)

RESULTS = Path(__file__).resolve().parent / "results"


def machine(name: str | None = None) -> dict:
    """This machine: ``name`` (a description such as "2-vCPU x86-64 development VM") when given, CPUs, platform, date."""
    found = {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
             "date": time.strftime("%Y-%m-%d")}
    return {"name": name, **found} if name else found


def features_summary(features: str) -> dict:
    """What a feature folder holds (from its ``metadata.json`` and window metadata), without naming its path."""
    from ser_core.training.streaming import scan_windows

    metadata = json.loads(Path(features, "metadata.json").read_text())
    meta = scan_windows(features)
    originals = meta[meta["copy"] == 0].drop_duplicates("utterance_id")
    return {"corpora": [name for name, _ in metadata.get("corpora", [])], "augment_copies": metadata.get("augment_copies"),
            "utterances": int(len(originals)), "windows": int(len(meta)),
            "windows_per_split": {k: int(v) for k, v in meta["split"].value_counts().items()},
            "shard_files": int(meta["file"].nunique())}


def _memory_kb(pid: int) -> tuple[int, int]:
    """``(rss, pss)`` of one process in KiB from ``/proc/PID/smaps_rollup`` (0, 0 when it has gone)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except (OSError, ValueError):
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return found


def measure(command: list[str]) -> dict:
    """Wall time and peak summed RSS and PSS (shared object-store pages split between the processes mapping them)
    of ``command`` and all its descendants, sampled every 0.5 s."""
    started = time.time()
    errors = tempfile.TemporaryFile("w+")
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    peak_rss = peak_pss = 0
    while job.poll() is None:
        memory = [_memory_kb(pid) for pid in _descendants(job.pid)]
        peak_rss = max(peak_rss, sum(m[0] for m in memory))
        peak_pss = max(peak_pss, sum(m[1] for m in memory))
        time.sleep(0.5)
    if job.returncode:
        errors.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed with status {job.returncode}:\n{errors.read()[-4000:]}")
    return {"wall_s": round(time.time() - started, 1), "peak_rss_total_mb": peak_rss // 1024, "peak_pss_total_mb": peak_pss // 1024,
            "output": job.stdout.read().strip()}


def run_job(features: str, workers: list[int], epochs: int, out_dir: Path) -> dict:
    """Wall time and peak memory of ``ser train`` per worker count, plus each bundle's metrics."""
    runs = {}
    for n in workers:
        out = out_dir / f"bundle-{n}w"
        command = [sys.executable, "-m", "jobs.cli", "train", "--features", features, "--out", str(out), "--workers", str(n),
                   "--epochs", str(epochs), "--run-dir", str(out_dir / f"run-{n}w")]
        measured = measure(command)
        info = json.loads((out / "bundle.json").read_text())
        runs[f"{n}_workers"] = {
            "wall_s": measured["wall_s"],
            "wall_min": round(measured["wall_s"] / 60, 1),
            "peak_rss_total_mb": measured["peak_rss_total_mb"],
            "peak_pss_total_mb": measured["peak_pss_total_mb"],
            "epochs_run": len(info["training"]["history"]),
            "epoch_s": [round(h["seconds"], 1) for h in info["training"]["history"]],
            "median_epoch_s": round(float(np.median([h["seconds"] for h in info["training"]["history"]])), 1),
            "train_wall_s": info["training"]["wall_seconds"],
            "best_epoch": info["training"]["best_epoch"],
            "uar": {split: {corpus: r["uar"] for corpus, r in reports.items()} for split, reports in info["metrics"].items()},
        }
        print(json.dumps({n: runs[f"{n}_workers"]}), flush=True)
    return runs


def _classic_rows(item: tuple[str, str, str, str, str]) -> list[tuple[str, str, str, str, int, np.ndarray]]:
    """Notebook feature vectors of one file: the original, and four copies when it is a training file."""
    import librosa

    utterance_id, uri, corpus, emotion, split = item
    y, sr = librosa.load(uri, sr=22050, offset=0.6, duration=2.5)
    y = np.pad(y, (0, max(0, int(2.5 * sr) - y.size)))
    variants = [y]
    if split == "train":
        rng = np.random.default_rng(zlib.crc32(utterance_id.encode()))
        noisy = y + 0.035 * rng.uniform() * np.max(np.abs(y)) * rng.normal(size=y.shape)
        pitched = librosa.effects.pitch_shift(y, sr=sr, n_steps=0.7)
        stretched = librosa.effects.time_stretch(y, rate=0.8)[: y.size]
        variants += [noisy, pitched, pitched + (noisy - y), np.pad(stretched, (0, y.size - stretched.size))]
    return [(utterance_id, corpus, emotion, split, copy, notebook_features(v.astype(np.float32), sr)) for copy, v in enumerate(variants)]


def run_classic(features: str, epochs: int) -> dict:
    """The notebook recipe's utterance-level figures on the validation and test splits."""
    import pandas as pd
    import pyarrow.parquet as pq

    from ser_core.labels import EMOTIONS
    from ser_core.models.cnn import one_hot
    from ser_core.training.metrics import grouped_reports

    manifest = pq.read_table(os.path.join(features, "manifest.parquet")).to_pandas()
    items = list(manifest[["utterance_id", "uri", "corpus", "emotion", "split"]].itertuples(index=False, name=None))
    started = time.time()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        rows = [row for rows in pool.map(_classic_rows, items, chunksize=16) for row in rows]
    feature_seconds = time.time() - started
    frame = pd.DataFrame(rows, columns=["utterance_id", "corpus", "emotion", "split", "copy", "x"])
    x = np.stack(frame["x"].to_numpy()).astype(np.float32)
    train = (frame["split"] == "train").to_numpy()
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = (x - mean) / std

    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(x.shape[1],)),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(len(EMOTIONS), activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    val = (frame["split"] == "validation").to_numpy()
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=8, restore_best_weights=True)
    model.fit(x[train], one_hot(frame["emotion"][train].to_numpy()), validation_data=(x[val], one_hot(frame["emotion"][val].to_numpy())),
              epochs=epochs, batch_size=64, verbose=0, callbacks=[stop])
    metrics = {}
    for split in ("validation", "test"):
        part = frame[(frame["split"] == split).to_numpy()].copy()
        part["predicted"] = [EMOTIONS[i] for i in model.predict(x[(frame["split"] == split).to_numpy()], verbose=0).argmax(axis=1)]
        metrics[split] = {name: {k: r[k] for k in ("n", "accuracy", "uar", "macro_f1")} for name, r in grouped_reports(part).items()}
    return {"recipe": "classic notebook: 22.05 kHz, 2.5 s crop from 0.6 s, flattened ZCR/RMS/MFCC (2376), 4 augmented copies on the train side, "
                      "dense 256-128 classifier with early stopping on validation accuracy",
            "epochs_max": epochs, "train_vectors": int(train.sum()), "feature_seconds": round(feature_seconds, 1), "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    job = sub.add_parser("job")
    job.add_argument("--features", required=True)
    job.add_argument("--workers", type=int, action="append")
    job.add_argument("--epochs", type=int, default=30)
    job.add_argument("--out-dir", default=None, help="Where bundles and runs go (default: a temporary folder).")
    job.add_argument("--out", default=str(RESULTS / "train.json"))
    job.add_argument("--machine", default=None, help="A description of this machine for the result.")
    classic = sub.add_parser("classic")
    classic.add_argument("--features", required=True)
    classic.add_argument("--epochs", type=int, default=40)
    classic.add_argument("--out", default=str(RESULTS / "train_classic.json"))
    args = parser.parse_args()
    if args.command == "job":
        out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="bench-train-"))
        result = {"machine": machine(args.machine), "features": features_summary(args.features), "epochs": args.epochs,
                  "sampler": "RSS and PSS summed over the job's process tree every 0.5 s",
                  "runs": run_job(args.features, args.workers or [1, 2], args.epochs, out_dir)}
    else:
        result = {"machine": machine(), "features": args.features, **run_classic(args.features, args.epochs)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
