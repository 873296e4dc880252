"""The classifier head over pooled encoder windows (:mod:`ser_core.embeddings`), and how it is fitted.

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
from ser_core.model import one_hot, sample_weights


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
    seed: int = 0


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


def centre_by_group(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``x`` minus the mean of its group's rows (per speaker in training, per channel in a call).

    Examples
    --------
    >>> centre_by_group(np.array([[1.0], [3.0], [10.0]]), np.array(["a", "a", "b"])).ravel().tolist()
    [-1.0, 1.0, 0.0]
    """
    frame = pd.DataFrame(x)
    return (frame - frame.groupby(groups).transform("mean")).to_numpy(np.float32)


def fit_head(x: np.ndarray, meta: pd.DataFrame, config: HeadConfig, epochs: int | None = None):
    """Fit a head on pooled windows ``x`` (already standardised) with labels and corpora in ``meta``.

    Returns the Keras model. Weights balance ``config.balance`` cells (see :func:`ser_core.model.sample_weights`).
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

