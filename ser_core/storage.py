"""Paths and URIs: local folders and ``s3://`` (or any fsspec protocol) behind one small API.

S3 endpoints and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), which s3fs/botocore read themselves.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``uri`` and the path within it."""
    return url_to_fs(uri)


def is_remote(uri: str) -> bool:
    """True for URIs with a non-local protocol, such as ``s3://``."""
    return "://" in uri and not uri.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join path components, keeping a URI's protocol intact."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def protocol_prefix(uri: str) -> str:
    """``"s3://"`` for an S3 URI, ``""`` for a local path."""
    return uri.split("://", 1)[0] + "://" if is_remote(uri) else ""


def list_files(root: str, extensions: tuple[str, ...]) -> list[str]:
    """All files under ``root`` (recursively) whose lower-cased name ends with one of ``extensions``, sorted, as URIs."""
    fs, path = filesystem(root)
    prefix = protocol_prefix(root)
    found = fs.find(path)
    return sorted(prefix + p for p in found if p.lower().endswith(extensions))


def relative_to(uri: str, root: str) -> str:
    """``uri``'s path relative to ``root`` with forward slashes."""
    _, path = filesystem(uri)
    _, root_path = filesystem(root)
    return posixpath.relpath(path.replace(os.sep, "/"), root_path.rstrip("/").replace(os.sep, "/"))


def parquet_files(folder: str) -> set[str]:
    """Parquet files under ``folder`` by path relative to it (empty when the folder does not exist).

    The listing cache is dropped first, so files written since the last look (on S3 too) are seen.
    """
    fs, path = filesystem(folder)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return set()
    return {relative_to(uri, folder) for uri in list_files(folder, (".parquet",))}


def remove(uri: str) -> None:
    """Delete the file ``uri`` if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path)


def read_bytes(uri: str) -> bytes:
    """The whole content of ``uri``."""
    with fsspec.open(uri, "rb") as handle:
        return handle.read()


def exists(uri: str) -> bool:
    """Whether ``uri`` exists."""
    fs, path = filesystem(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    """Create the folder ``uri`` (a no-op on object stores)."""
    fs, path = filesystem(uri)
    if not is_remote(uri):
        fs.makedirs(path, exist_ok=True)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so that readers see either nothing or the whole file.

    Locally the bytes go to a temporary sibling that is renamed into place; on object stores a single
    PUT is already all-or-nothing.
    """
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_parquet_atomic(table: pa.Table, uri: str) -> None:
    """Write ``table`` as one Parquet file at ``uri``, atomically (see :func:`write_bytes_atomic`)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    write_bytes_atomic(uri, sink.getvalue())


def read_parquet(uri: str) -> pa.Table:
    """Read one Parquet file or a folder of them."""
    fs, path = filesystem(uri)
    return pq.read_table(path, filesystem=fs)
