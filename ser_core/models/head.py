"""The classifier head over pooled encoder windows (:mod:`ser_core.frontends.embeddings`), and how it is fitted.

The head is a small MLP in ``tf_keras`` built only from stock layers, so its ``.keras`` file loads in safe
mode with no custom code. Inputs are standardised with statistics stored in the bundle; with
``speaker_norm`` each speaker's windows (in a call: each channel's) are first centred on that speaker's own
mean, which removes much of what identifies a voice, a microphone or a level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser_core.labels import EMOTIONS
from ser_core.models.cnn import one_hot, sample_weights


@dataclass(frozen=True)
class HeadConfig:
    """Architecture and optimisation of the head."""

    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.3
    input_dropout: float = 0.1
    l2: float = 1e-4
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 1e-3
    label_smoothing: float = 0.1
    balance: str = "corpus_class"
    speaker_norm: bool = False
    speaker_prior_windows: int = 10  # shrinks a speaker's mean towards the training mean: weight n / (n + this)
    copies: tuple[int, ...] = (0, 1)  # embedded copies fitted on: 0 the clip, 1 the call channel, 2.. augmented
    seed: int = 0


RECIPES: dict[str, HeadConfig] = {
    "logreg": HeadConfig(hidden=(), dropout=0.0, input_dropout=0.0),
    "mlp256": HeadConfig(),
    "mlp256_clean_only": HeadConfig(copies=(0,)),
    "mlp256_speaker_norm": HeadConfig(speaker_norm=True),
    "mlp256_speaker_norm_k0": HeadConfig(speaker_norm=True, speaker_prior_windows=0),
    "mlp512x256": HeadConfig(hidden=(512, 256)),
}
"""The head recipes compared by ``bench/encoder_sweep.py``; ``ser train-head --recipe`` takes one by name."""


def build_head(dim: int, config: HeadConfig, n_classes: int = len(EMOTIONS)):
    """Dense ReLU layers with dropout, softmax over ``EMOTIONS``."""
    import tf_keras as keras

    reg = keras.regularizers.l2(config.l2)
    inputs = keras.Input(shape=(dim,), name="embedding")
    x = keras.layers.Dropout(config.input_dropout)(inputs)
    for i, units in enumerate(config.hidden):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"dense{i}")(x)
        x = keras.layers.Dropout(config.dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg, name="emotion")(x)
    return keras.Model(inputs, outputs, name="ser_whisper_head")


def speaker_centre(x: np.ndarray, prior: np.ndarray, prior_windows: int) -> np.ndarray:
    """One speaker's windows ``x`` minus their mean, shrunk towards ``prior`` as if ``prior_windows`` windows at
    ``prior`` were added: a speaker heard for a few seconds is centred on little more than the training mean.

    Examples
    --------
    >>> speaker_centre(np.array([[1.0], [3.0]]), np.array([0.0]), 0).ravel().tolist()
    [-1.0, 1.0]
    >>> speaker_centre(np.array([[1.0], [3.0]]), np.array([0.0]), 2).ravel().tolist()
    [0.0, 2.0]
    """
    if not len(x):
        return x.astype(np.float32)
    centre = (x.sum(0) + prior_windows * prior) / (len(x) + prior_windows)
    return (x - centre).astype(np.float32)


def centre_by_group(x: np.ndarray, groups: np.ndarray, prior: np.ndarray, prior_windows: int) -> np.ndarray:
    """:func:`speaker_centre` applied to the rows of each group (per speaker in training and evaluation)."""
    out = np.empty_like(x, dtype=np.float32)
    for group in pd.unique(groups):
        rows = groups == group
        out[rows] = speaker_centre(x[rows], prior, prior_windows)
    return out


def fit_head(x: np.ndarray, meta: pd.DataFrame, config: HeadConfig, epochs: int | None = None):
    """Fit a head on pooled windows ``x`` (already standardised) with labels and corpora in ``meta``.

    Returns the Keras model. Weights balance ``config.balance`` cells (see :func:`ser_core.models.cnn.sample_weights`).
    """
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(config.seed)
    model = build_head(x.shape[1], config)
    steps = max(1, len(x) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps * (epochs or config.epochs))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing))
    weights = sample_weights(meta["corpus"].to_numpy(), meta["emotion"].to_numpy(), config.balance)
    data = tf.data.Dataset.from_tensor_slices((x, one_hot(meta["emotion"].to_numpy()), weights))
    data = data.shuffle(len(x), seed=config.seed).batch(config.batch_size)
    model.fit(data, epochs=epochs or config.epochs, verbose=0)
    return model


def speaker_groups(meta: pd.DataFrame) -> np.ndarray:
    """The speaker-normalisation group of each window: corpus, speaker and copy (the call copy is another channel)."""
    return (meta["corpus"] + "/" + meta["speaker"] + "#" + meta["copy"].astype(str)).to_numpy()


@dataclass(frozen=True)
class HeadInputs:
    """Pooled windows as a head is fitted on them: speaker-centred when the recipe says so, the rows fitted on and
    their standardisation."""

    x: np.ndarray
    fit_rows: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    speaker_norm: dict | None
    """The prior that scoring centres each speaker towards, as the bundle records it; ``None`` without speaker_norm."""


def head_inputs(x: np.ndarray, meta: pd.DataFrame, config: HeadConfig, fit_splits: tuple[str, ...]) -> HeadInputs:
    """The windows of ``x`` (rows described by ``meta``) ready for a head of ``config`` fitted on ``fit_splits``."""
    fit_rows = (meta["split"].isin(fit_splits) & meta["copy"].isin(config.copies)).to_numpy()
    speaker_norm = None
    if config.speaker_norm:
        prior = x[fit_rows].mean(0)
        x = centre_by_group(x, speaker_groups(meta), prior, config.speaker_prior_windows)
        speaker_norm = {"prior": prior.tolist(), "prior_windows": config.speaker_prior_windows}
    return HeadInputs(x, fit_rows, x[fit_rows].mean(0), x[fit_rows].std(0) + 1e-3, speaker_norm)
