"""``make demo``: the main job on an embedded default, with local Ray started in-process and local folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.extract import ExtractJobConfig, run_extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-out")
    parser.add_argument("--corpora", default="../shared/corpora")
    args = parser.parse_args()
    corpora = Path(args.corpora)
    present = tuple((name, str(corpora / name)) for name in ("ravdess", "tess") if (corpora / name).is_dir())
    if not present:
        raise SystemExit(f"demo: no corpora under {corpora}; pass --corpora DIR holding ravdess/ and/or tess/")
    print(f"demo: extracting features from {', '.join(n for n, _ in present)} under {corpora} into {args.out}/features")
    summary = run_extract(ExtractJobConfig(corpora=present, out=str(Path(args.out) / "features")))
    print(f"demo: {summary.utterances} utterances, {summary.windows} windows, {summary.errors} rejected, {summary.wall_seconds:.1f} s")


if __name__ == "__main__":
    main()
