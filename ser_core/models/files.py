"""Model files as untrusted input: a ``model.keras`` is checked before Keras sees it, then loaded in safe mode.

The file must be a Keras v3 zip with exactly the expected members, and every class its config names must be on an
allow-list of the built-in layers the project uses and its two registered layers (:mod:`ser_core.models.cnn`). A legacy
HDF5 file, a ``Lambda`` layer or any other class is refused with a :class:`~ser_core.errors.BundleError`.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

from ser_core.errors import BundleError
from ser_core.models.cnn import _keras, custom_layers

MODEL_FILE = "model.keras"
KERAS_MEMBERS = frozenset({"config.json", "model.weights.h5", "metadata.json"})
MAX_JSON_MEMBER = 16 * 2**20
# Keras classes a model config may name, by the module Keras records for them.
ALLOWED_CLASSES = {
    "keras.layers": frozenset({
        "InputLayer", "Conv1D", "Conv2D", "BatchNormalization", "Activation", "MaxPooling1D", "MaxPooling2D",
        "Reshape", "Concatenate", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Dropout", "Dense",
    }),
    "keras.initializers": frozenset({"GlorotUniform", "Zeros", "Ones"}),
    "keras.regularizers": frozenset({"L2"}),
    "tf_keras.src.engine.functional": frozenset({"Functional"}),
}
REGISTERED_CLASSES = {"ser>SpecAugment": "SpecAugment", "ser>WindowMeanNorm": "WindowMeanNorm"}
# The module Keras records for them: where they live, or where they lived when the shipped cnn was saved.
REGISTERED_MODULES = frozenset({"ser_core.models.cnn", "ser_core.model"})


def _check_class(node: dict) -> None:
    module, name, registered = node.get("module"), node["class_name"], node.get("registered_name")
    if registered in REGISTERED_CLASSES and module in REGISTERED_MODULES and name == REGISTERED_CLASSES[registered]:
        return
    if name in ALLOWED_CLASSES.get(module, ()) and registered in (None, name):
        return
    raise BundleError(f"{MODEL_FILE}: class {name!r} (module {module!r}, registered as {registered!r}) is not allowed in a model")


def _check_config(node: object) -> None:
    """Refuse any object in a Keras config whose class is not on the allow-list (``Lambda`` included)."""
    if isinstance(node, dict):
        if "class_name" in node:
            _check_class(node)
        for value in node.values():
            _check_config(value)
    elif isinstance(node, list):
        for value in node:
            _check_config(value)


def check_keras_archive(data: bytes) -> None:
    """Refuse, before Keras sees them, model bytes that are not a Keras v3 zip of known layers only."""
    if not data.startswith(b"PK\x03\x04"):
        kind = "a legacy HDF5 file" if data.startswith(b"\x89HDF") else "not a zip archive"
        raise BundleError(f"{MODEL_FILE} is {kind}; only the Keras v3 zip format is accepted (it cannot run code)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if len(members) != len(archive.infolist()) or set(members) != KERAS_MEMBERS:
                raise BundleError(f"{MODEL_FILE} holds {sorted(members)}; expected exactly {sorted(KERAS_MEMBERS)}")
            if any(members[name].file_size > MAX_JSON_MEMBER for name in ("config.json", "metadata.json")):
                raise BundleError(f"{MODEL_FILE}: config.json or metadata.json is larger than {MAX_JSON_MEMBER} bytes")
            config = json.loads(archive.read("config.json"))
            json.loads(archive.read("metadata.json"))
        _check_config(config)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{MODEL_FILE} is not a readable Keras archive: {err!r}") from None


def load_keras(files: dict[str, bytes]):
    """The Keras model from a checked ``model.keras`` (Keras safe mode, the project's registered layers only)."""
    data = files[MODEL_FILE]
    check_keras_archive(data)
    with tempfile.TemporaryDirectory(prefix="ser-model-") as folder:
        path = Path(folder, MODEL_FILE)
        path.write_bytes(data)
        return _keras().models.load_model(path, custom_objects=custom_layers(), safe_mode=True, compile=False)
