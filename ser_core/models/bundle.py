"""Model bundles: publishing, verifying and loading, all here.

A bundle is a folder, local or ``s3://``::

    bundle.json    the manifest, written last: model kind, labels, feature spec and version, normalisation,
                   held-out split groups, data summary, metrics, provenance, ``files``: the sha256 and size
                   of every other file of the bundle, and ``model_version`` (see :func:`model_version`)
    model.keras    the model ("cnn" kind): a Keras v3 zip of config.json, model.weights.h5 and metadata.json
    MODEL_CARD.md  a short human-readable card
    figures/       PNGs

Publishing (:func:`publish_bundle`) writes every other file first and ``bundle.json`` last, each atomically,
so a reader finds the old manifest or the new one. Loading reads the manifest, then the files it names, and
refuses any file whose hash differs: a reader that meets a half-published bundle (a new model under the old
manifest) gets a :class:`BundleError`, never a mix of two bundles.

Bundles are untrusted input (they come from ``s3://`` and are shipped to every scoring actor): a model file
must be a zip with exactly the expected members, and every class its config names must be on an allow-list
of the built-in layers the project uses and its two registered layers, all checked before Keras sees the
file (:mod:`ser_core.models.files`). A legacy HDF5 file, a ``Lambda`` layer or any other class is refused. What
each ``model_kind`` loads, and its front end, is registered in :mod:`ser_core.models.kinds`. ``bundle.json`` is read
bounded (at most :data:`MAX_MANIFEST_BYTES`, nested at most :data:`MAX_MANIFEST_DEPTH` deep) and only from a regular
file.

The model version written into every report row is computed at load from everything that changes results: the
whole of ``bundle.json`` (labels, normalisation, feature and segmentation settings, encoder hash, the hashes of the
other files) and the model file itself. An edited bundle is another model.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_core import storage
from ser_core.audio.segmentation import Segmentation
from ser_core.corpora.manifest import Utterance
from ser_core.corpora.splits import HeldOutGroups, ModelSplits, SplitConfig
from ser_core.errors import BundleError
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend, FeatureFrontend
from ser_core.labels import EMOTIONS
from ser_core.models.files import MAX_JSON_MEMBER, MODEL_FILE
from ser_core.models.kinds import ModelKind, get_kind

BUNDLE_FILE = "bundle.json"
CARD_FILE = "MODEL_CARD.md"
BUNDLED_MODEL_DIR = Path(__file__).with_name("bundled_model")
BUNDLED_MODELS: dict[str, Path] = {"cnn": BUNDLED_MODEL_DIR, "whisper-head": Path(__file__).with_name("bundled_whisper_head")}
"""The bundles shipped in the package, by the name ``--model`` takes (a name wins over a folder of that name)."""
DEFAULT_MODEL = "whisper-head"
DEFAULT_KIND = "cnn"

MAX_MANIFEST_BYTES = 4 * 2**20
MAX_MANIFEST_DEPTH = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


@dataclass
class ModelBundle:
    """A loaded model bundle. :meth:`predict` takes raw (un-normalised) windows."""

    path: str
    labels: tuple[str, ...]
    spec: FeatureSpec
    mean: np.ndarray
    std: np.ndarray
    model: object
    info: dict = field(default_factory=dict)
    frontend: FeatureFrontend | EncoderFrontend | None = None
    version: str = ""
    """The model version written into every report row (see :func:`model_version`)."""

    def __post_init__(self) -> None:
        if self.frontend is None:
            self.frontend = FeatureFrontend(self.spec)

    def normalise(self, windows: np.ndarray) -> np.ndarray:
        return ((windows - self.mean) / self.std).astype(np.float32)

    def predict(self, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities, shape ``(n, len(labels))``, for raw windows of the front end's ``input_shape``."""
        if windows.shape[1:] != self.frontend.input_shape:
            raise BundleError(f"windows of shape {windows.shape[1:]} do not match the model's {self.frontend.input_shape}")
        if len(windows) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        x = self.normalise(windows)
        outputs = [self.model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs).astype(np.float32)


def segmentation_of(info: dict) -> Segmentation:
    """The segmentation the bundle was trained with (bundles older than segmented training: today's default)."""
    try:
        return Segmentation.from_dict(info["segmentation"]) if info.get("segmentation") else Segmentation()
    except (TypeError, KeyError) as err:
        raise BundleError(f"segmentation settings not understood: {err}") from None


def frontend_of(kind: str, info: dict, spec: FeatureSpec) -> FeatureFrontend | EncoderFrontend:
    """The front end a bundle of ``kind`` takes its windows from, cutting speech as the bundle was trained to."""
    return get_kind(kind).frontend(info, spec, segmentation_of(info))


def model_kind(info: dict) -> tuple[str, ModelKind]:
    """The bundle's model kind (``cnn`` when ``bundle.json`` names none) and how to load it."""
    name = info.get("model_kind", DEFAULT_KIND)
    return name, get_kind(name)


def model_version(info: dict, model: bytes) -> str:
    """``ser-<kind>-`` plus a hash of the whole manifest ``info`` (canonical JSON, its own ``model_version`` left out)
    and of the model file: the same bundle, the same version; any edit that can change an answer, another."""
    manifest = {key: value for key, value in info.items() if key != "model_version"}
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(hashlib.sha256(canonical).digest() + hashlib.sha256(model).digest()).hexdigest()
    return f"ser-{info.get('model_kind', DEFAULT_KIND)}-{digest[:12]}"


# ------------------------------------------------------------------------------------------- publishing


def stage_bundle(model, spec: FeatureSpec, mean: np.ndarray, std: np.ndarray, folder: str | Path, info: dict | None = None,
                 card: str | None = None, kind: str = DEFAULT_KIND, manifest: dict | None = None) -> Path:
    """Write a bundle of ``kind`` into the local ``folder`` for :func:`publish_bundle` (its manifest has no hashes yet).

    ``manifest`` adds a kind's own fields to ``bundle.json`` (the whisper-head's embedding spec, say).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    payload = {
        **(info or {}),
        "model_kind": kind,
        "labels": list(EMOTIONS),
        **(manifest or {}),
        "feature_version": spec.version,
        "feature_spec": spec.to_dict(),
        "normalisation": {"mean": np.asarray(mean, float).tolist(), "std": np.asarray(std, float).tolist()},
    }
    (folder / BUNDLE_FILE).write_text(json.dumps(payload, indent=2))
    if card is not None:
        (folder / CARD_FILE).write_text(card)
    return folder


def file_hashes(folder: str | Path) -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under the local ``folder`` except ``bundle.json``."""
    root = Path(folder)
    return {
        path.relative_to(root).as_posix(): {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != BUNDLE_FILE
    }


def publish_bundle(local: str | Path, out: str) -> dict:
    """Publish the staged bundle ``local`` to ``out`` (a folder or ``s3://`` prefix); returns its manifest.

    Every file is written atomically; ``bundle.json``, carrying every other file's hash and the model version (for
    readers: loading computes it again), goes last.
    """
    info = json.loads(Path(local, BUNDLE_FILE).read_text())
    info["files"] = file_hashes(local)
    info["model_version"] = model_version(info, Path(local, model_kind(info)[1].files[0]).read_bytes())
    for name in info["files"]:
        storage.write_bytes_atomic(storage.join(out, *name.split("/")), Path(local, name).read_bytes())
    storage.write_bytes_atomic(storage.join(out, BUNDLE_FILE), json.dumps(info, indent=2).encode())
    return info


def save_bundle(model, spec: FeatureSpec, mean: np.ndarray, std: np.ndarray, out: str | Path, info: dict | None = None,
                card: str | None = None) -> Path | str:
    """Stage and publish a CNN bundle to ``out`` (returned: a ``Path`` when local); ``info`` (metrics, data summary, ...)
    is merged into ``bundle.json``."""
    with tempfile.TemporaryDirectory(prefix="ser-bundle-") as folder:
        stage_bundle(model, spec, mean, std, folder, info, card)
        publish_bundle(folder, str(out))
    return str(out) if storage.is_remote(str(out)) else Path(out)


# -------------------------------------------------------------------------------------- reading, loading


def _folder(uri: str | Path | None) -> str:
    """A bundle's location: a shipped bundle's name (``None``: the default one), a folder or a URI."""
    name = DEFAULT_MODEL if uri is None else str(uri)
    return str(BUNDLED_MODELS.get(name, name))


def parse_manifest(data: bytes) -> dict:
    """The content of a ``bundle.json``; :class:`BundleError` when it is larger than :data:`MAX_MANIFEST_BYTES`,
    nested deeper than :data:`MAX_MANIFEST_DEPTH` (checked before parsing), not JSON, or not an object."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{BUNDLE_FILE} is larger than {MAX_MANIFEST_BYTES // 2**20} MB")
    structure = np.frombuffer(_JSON_STRING.sub(b'""', data), np.uint8)
    opened = np.isin(structure, np.frombuffer(b"[{", np.uint8)).astype(np.int64)
    depth = np.cumsum(opened - np.isin(structure, np.frombuffer(b"]}", np.uint8))).max(initial=0)
    if depth > MAX_MANIFEST_DEPTH:
        raise BundleError(f"{BUNDLE_FILE} is nested {depth} levels deep, more than the {MAX_MANIFEST_DEPTH} allowed")
    try:
        info = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{BUNDLE_FILE} is not JSON: {err}") from None
    if not isinstance(info, dict):
        raise BundleError(f"{BUNDLE_FILE} is not a JSON object")
    return info


def read_bundle_info(uri: str | Path | None = None) -> dict:
    """The parsed ``bundle.json`` of a bundle (local or ``s3://``; default: the bundled model), read bounded."""
    folder = _folder(uri)
    try:
        return parse_manifest(storage.read_input(storage.join(folder, BUNDLE_FILE), MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        raise BundleError(f"{folder}: no {BUNDLE_FILE}; not a model bundle") from None
    except (BundleError, OSError) as err:
        raise BundleError(f"{folder}: {err}") from None


def read_bundle_files(uri: str | Path | None = None) -> dict[str, bytes]:
    """``bundle.json`` and the model files it names, by name (local or ``s3://``; default: the bundled model).

    Shipping these bytes lets a process anywhere (a Ray actor on another node) load the bundle with
    :func:`load_bundle_files`, which verifies them.
    """
    folder = _folder(uri)
    info = read_bundle_info(folder)
    files = {BUNDLE_FILE: json.dumps(info).encode()}
    for name in model_kind(info)[1].files:
        recorded = (info.get("files") or {}).get(name) or {}
        try:  # never more than the size the manifest records (plus one byte, to tell a larger file)
            files[name] = storage.read_input(storage.join(folder, name), int(recorded.get("bytes", MAX_JSON_MEMBER)))
        except FileNotFoundError:
            raise BundleError(f"{folder}: {BUNDLE_FILE} needs {name}, which is missing") from None
        except (OSError, TypeError, ValueError) as err:
            raise BundleError(f"{folder}: {name}: {err}") from None
    return files


def verify_files(info: dict, files: dict[str, bytes], names: tuple[str, ...]) -> None:
    """Refuse unless each of ``names`` is in ``files`` with the size and sha256 that ``bundle.json`` records."""
    recorded = info.get("files")
    if not isinstance(recorded, dict):
        raise BundleError(f"{BUNDLE_FILE} records no file hashes (a bundle from before verified publishing); republish it")
    for name in names:
        expected, data = recorded.get(name), files.get(name)
        if not isinstance(expected, dict) or data is None:
            raise BundleError(f"{BUNDLE_FILE} records no hash for {name}, or {name} is missing")
        if len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise BundleError(f"{name} does not match the hash in {BUNDLE_FILE}: a torn or tampered bundle "
                              "(published while being read, or altered); read it again once publishing has finished")


def _spec(info: dict, expected_spec: FeatureSpec | None) -> FeatureSpec:
    try:
        spec = FeatureSpec.from_dict(info["feature_spec"])
    except (KeyError, TypeError) as err:
        raise BundleError(f"{BUNDLE_FILE}: no usable feature_spec ({err})") from None
    if spec.version != info.get("feature_version"):
        raise BundleError(f"stored feature spec hashes to {spec.version}, bundle says {info.get('feature_version')}")
    if expected_spec is not None and expected_spec.version != spec.version:
        raise BundleError(f"model was trained on feature version {spec.version}, the extractor produces {expected_spec.version}")
    return spec


def load_bundle_files(files: dict[str, bytes], source: str, expected_spec: FeatureSpec | None = None) -> ModelBundle:
    """Verify and load a bundle from :func:`read_bundle_files` output; ``source`` names where it came from.

    Refuses, with :class:`BundleError`, files that differ from the manifest's hashes, a model that is not in
    its kind's safe format, and a feature version that differs from ``expected_spec``'s or from the version
    the stored spec hashes to.
    """
    try:
        info = parse_manifest(files[BUNDLE_FILE])
        kind_name, kind = model_kind(info)
        verify_files(info, files, kind.files)
        spec = _spec(info, expected_spec)
        model = kind.load(files)
        norm = info["normalisation"]
        return ModelBundle(path=source, labels=tuple(info["labels"]), spec=spec, mean=np.asarray(norm["mean"], np.float32),
                           std=np.asarray(norm["std"], np.float32), model=model, info=info,
                           frontend=frontend_of(kind_name, info, spec), version=model_version(info, files[kind.files[0]]))
    except BundleError as err:
        raise BundleError(f"{source}: {err}") from None
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise BundleError(f"{source}: malformed bundle: {err}") from None


def load_bundle(path: str | Path | None = None, expected_spec: FeatureSpec | None = None) -> ModelBundle:
    """Read, verify and load a bundle (default: the one shipped in the package; ``s3://`` URIs too)."""
    return load_bundle_files(read_bundle_files(path), _folder(path), expected_spec)


# ------------------------------------------------------------------------------------ what a model held out


def training_split_config(info: dict) -> SplitConfig:
    """The split configuration the bundle's training features were made with (the default for older bundles)."""
    recorded = (info.get("features") or info.get("embeddings") or {}).get("split_config")
    return SplitConfig(**recorded) if recorded else SplitConfig()


def held_out_groups(info: dict) -> HeldOutGroups | None:
    """The validation and test groups recorded at training time, or ``None`` for a bundle that records none."""
    recorded = info.get("held_out_groups")
    return HeldOutGroups.from_dict(recorded) if recorded else None


def model_splits(info: dict, utterances: list[Utterance]) -> ModelSplits:
    """Each utterance's split with respect to the model of ``info``: recorded groups, else recomputed (and said so)."""
    return ModelSplits.of(utterances, held_out_groups(info), training_split_config(info))
