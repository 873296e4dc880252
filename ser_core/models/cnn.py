"""The emotion CNN and its training helpers (architecture, custom layers, compile, data pipeline, weights).

Keras here is ``tf_keras`` (Keras 2), used explicitly everywhere: Keras 3's ``fit()`` fails under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), which Ray Train's TensorflowTrainer uses.

Model bundles (publishing, verifying, loading) live in :mod:`ser_core.models.bundle`; the ``cnn`` model kind (its loader,
front end and card) is registered in :mod:`ser_core.models.kinds`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture knobs of :func:`build_model`."""

    filters: tuple[int, ...] = (96, 128, 160)
    kernel_size: int = 5
    dropout: float = 0.3
    time_masks: int = 2
    time_mask_frames: int = 25
    feature_masks: int = 2
    feature_mask_bins: int = 8
    l2: float = 1e-4
    window_mean_norm: bool = True  # subtract each window's mean over time per feature (channel normalisation)
    conv2d_filters: tuple[int, ...] = ()  # optional 2-D front end (3x3 conv + 2x2 pooling each) over time x features
    dense_units: int = 64


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation knobs shared by ``ser train`` workers and single-process experiments."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    mixup_alpha: float = 0.2  # 0 disables mixup
    label_smoothing: float = 0.05
    balance: str = "corpus_class"  # sample weighting: "none", "class" or "corpus_class"
    patience: int = 8  # epochs without a better validation score before stopping
    seed: int = 0


def _keras():
    import tf_keras

    return tf_keras


def _register_layers():
    keras = _keras()
    tf = __import__("tensorflow")

    @keras.saving.register_keras_serializable(package="ser")
    class SpecAugment(keras.layers.Layer):
        """SpecAugment-style masking (Park et al. 2019): random time and feature stripes set to zero; training only."""

        def __init__(self, time_masks=2, time_mask_frames=25, feature_masks=2, feature_mask_bins=8, **kwargs):
            super().__init__(**kwargs)
            self.time_masks = time_masks
            self.time_mask_frames = time_mask_frames
            self.feature_masks = feature_masks
            self.feature_mask_bins = feature_mask_bins

        def _mask(self, shape, axis_len, count, width, axis):
            batch = shape[0]
            positions = tf.range(axis_len)[tf.newaxis, :]
            keep = tf.ones((batch, axis_len), tf.bool)
            for _ in range(count):
                w = tf.random.uniform((batch, 1), 0, width + 1, tf.int32)
                room = tf.cast(tf.maximum(axis_len - w + 1, 1), tf.float32)
                start = tf.cast(tf.random.uniform((batch, 1)) * room, tf.int32)
                keep &= ~((positions >= start) & (positions < start + w))
            keep = tf.cast(keep, tf.float32)
            return keep[:, :, tf.newaxis] if axis == 1 else keep[:, tf.newaxis, :]

        def call(self, inputs, training=None):
            if not training:
                return inputs
            shape = tf.shape(inputs)
            masked = inputs * self._mask(shape, shape[1], self.time_masks, self.time_mask_frames, 1)
            return masked * self._mask(shape, shape[2], self.feature_masks, self.feature_mask_bins, 2)

        def get_config(self):
            return {
                **super().get_config(),
                "time_masks": self.time_masks,
                "time_mask_frames": self.time_mask_frames,
                "feature_masks": self.feature_masks,
                "feature_mask_bins": self.feature_mask_bins,
            }

    @keras.saving.register_keras_serializable(package="ser")
    class WindowMeanNorm(keras.layers.Layer):
        """Subtract each window's mean over time, per feature: removes a fixed channel colouring and gain."""

        def call(self, inputs):
            return inputs - tf.reduce_mean(inputs, axis=1, keepdims=True)

    return SpecAugment, WindowMeanNorm


_LAYERS: dict = {}


def custom_layers() -> dict:
    """The project's registered Keras layers, by class name (registered once per process)."""
    if not _LAYERS:
        _LAYERS.update({layer.__name__: layer for layer in _register_layers()})
    return _LAYERS


def build_model(spec: FeatureSpec, config: ModelConfig = ModelConfig(), n_classes: int = len(EMOTIONS)):
    """A CNN over time with the frame features as channels (after an optional 2-D front end), global average+max
    pooling over time, softmax output.

    Input: normalised windows of shape ``spec.window_shape``; output: probabilities over ``EMOTIONS``.
    """
    keras = _keras()
    layers, reg = keras.layers, keras.regularizers.l2(config.l2)
    custom = custom_layers()
    inputs = keras.Input(shape=spec.window_shape, name="features")
    x = custom["WindowMeanNorm"]()(inputs) if config.window_mean_norm else inputs
    x = custom["SpecAugment"](config.time_masks, config.time_mask_frames, config.feature_masks, config.feature_mask_bins)(x)
    if config.conv2d_filters:
        x = layers.Reshape((*spec.window_shape, 1))(x)
        for i, filters in enumerate(config.conv2d_filters):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv2d{i}")(x)
            x = layers.BatchNormalization(name=f"bn2d{i}")(x)
            x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]))(x)
    for i, filters in enumerate(config.filters):
        x = layers.Conv1D(filters, config.kernel_size, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation("relu")(x)
        if i < len(config.filters) - 1:
            x = layers.MaxPooling1D(2)(x)
    pooled = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(config.dropout)(pooled)
    x = layers.Dense(config.dense_units, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="ser_cnn")


def compile_model(model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam with a cosine learning-rate decay over all epochs, label-smoothed cross-entropy on one-hot (mixed) labels."""
    keras = _keras()
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps_per_epoch * config.epochs)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        weighted_metrics=["accuracy"],
    )


def normalisation_stats(total: np.ndarray, total_sq: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation from sums over ``count`` frames (std floored at 1e-3)."""
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def balance_weights(counts: dict[tuple[str, str], int], balance: str) -> dict[tuple[str, str], float]:
    """Weight per ``(corpus, emotion)`` cell from its window count, with mean 1 over all windows.

    ``class`` equalises the emotions' total weight, ``corpus_class`` every cell's, ``none`` weighs all windows 1.

    Examples
    --------
    >>> {k: round(v, 2) for k, v in balance_weights({("a", "x"): 2, ("a", "y"): 1, ("b", "x"): 1}, "corpus_class").items()}
    {('a', 'x'): 0.67, ('a', 'y'): 1.33, ('b', 'x'): 1.33}
    """
    if balance == "none":
        return {cell: 1.0 for cell in counts}
    if balance == "class":
        group = {cell: cell[1] for cell in counts}
    elif balance == "corpus_class":
        group = {cell: cell for cell in counts}
    else:
        raise ValueError(f"unknown balance {balance!r}; use none, class or corpus_class")
    group_counts: dict = {}
    for cell, n in counts.items():
        group_counts[group[cell]] = group_counts.get(group[cell], 0) + n
    total = sum(counts.values())
    return {cell: total / (len(group_counts) * group_counts[group[cell]]) for cell in counts}


def sample_weights(corpus: np.ndarray, emotion: np.ndarray, balance: str) -> np.ndarray:
    """Per-window weights with mean 1 (see :func:`balance_weights`).

    Examples
    --------
    >>> weights = sample_weights(np.array(["a", "a", "a", "b"]), np.array(["x", "x", "y", "x"]), "corpus_class")
    >>> [round(float(w), 2) for w in weights]
    [0.67, 0.67, 1.33, 1.33]
    """
    cells = list(zip(corpus.tolist(), emotion.tolist()))
    weights = balance_weights(dict(Counter(cells)), balance)
    return np.array([weights[cell] for cell in cells], np.float32)


def streamed_train_dataset(batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]], spec: FeatureSpec,
                           config: TrainConfig):
    """``tf.data`` over ready-made ``(windows, one-hot labels, weights)`` batches from ``batches()`` (see :func:`finish_batches`).

    Batches come whole (already shuffled), so the dataset holds only the few that are prefetched, whatever the
    size of the data behind it.
    """
    import tensorflow as tf

    signature = (
        tf.TensorSpec((None, *spec.window_shape), tf.float32),
        tf.TensorSpec((None, len(EMOTIONS)), tf.float32),
        tf.TensorSpec((None,), tf.float32),
    )
    return finish_batches(tf.data.Dataset.from_generator(batches, output_signature=signature), config, prefetch=2)


def finish_batches(dataset, config: TrainConfig, prefetch: int | None = None):
    """Batches mixed up when configured, auto-sharding off, prefetched.

    Windows are already normalised. Mixup (Zhang et al. 2018) blends each batch with a shuffled copy of itself,
    labels and weights included, with one Beta(alpha, alpha) draw per example.
    """
    import tensorflow as tf

    if config.mixup_alpha > 0:
        alpha = config.mixup_alpha

        def mix(xb, yb, wb):
            a = tf.random.gamma(tf.shape(yb)[:1], alpha)
            b = tf.random.gamma(tf.shape(yb)[:1], alpha)
            lam = a / (a + b)
            order = tf.random.shuffle(tf.range(tf.shape(yb)[0]))
            return (
                lam[:, None, None] * xb + (1 - lam[:, None, None]) * tf.gather(xb, order),
                lam[:, None] * yb + (1 - lam[:, None]) * tf.gather(yb, order),
                lam * wb + (1 - lam) * tf.gather(wb, order),
            )

        dataset = dataset.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE if prefetch is None else prefetch)


def one_hot(emotions: np.ndarray) -> np.ndarray:
    """One-hot float32 rows in :data:`EMOTIONS` order for canonical emotion strings."""
    index = {label: i for i, label in enumerate(EMOTIONS)}
    return np.eye(len(EMOTIONS), dtype=np.float32)[[index[e] for e in emotions]]
