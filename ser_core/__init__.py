"""ser_core: the speech-emotion-recognition library (no job orchestration, no Ray or click imports).

One sub-package per stage, in the order data flows: :mod:`~ser_core.corpora` (labelled corpora in),
:mod:`~ser_core.audio` (decoding, the call channel, voice activity, the one segmentation),
:mod:`~ser_core.frontends` (audio to model windows), :mod:`~ser_core.training` (examples, shards, evaluation),
:mod:`~ser_core.models` (models, kinds and bundles), :mod:`~ser_core.scoring` (one call scored, its rows) and
:mod:`~ser_core.reports` (schemas, the report store, ``ser report``). Every error raised on purpose derives from
:class:`ser_core.errors.SerError`.
"""
