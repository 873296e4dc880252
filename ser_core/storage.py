"""Paths and URIs: local folders and ``s3://`` (or any fsspec protocol) behind one small API.

S3 endpoints and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), which s3fs/botocore read themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import posixpath
import stat
import threading
import uuid
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from ser_core.errors import SerError


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
    path, root_path = path.replace(os.sep, "/"), root_path.rstrip("/").replace(os.sep, "/")
    if path.startswith(root_path + "/"):  # the usual case, without touching the working directory
        return path[len(root_path) + 1 :]
    return posixpath.relpath(path, root_path)


def parquet_files(folder: str) -> set[str]:
    """Parquet files under ``folder`` by path relative to it (empty when the folder does not exist).

    The listing cache is dropped first, so files written since the last look (on S3 too) are seen.
    """
    return set(parquet_versions(folder))


def parquet_versions(folder: str) -> dict[str, str]:
    """``path relative to folder -> version`` of the Parquet files under ``folder``, listed as :func:`parquet_files`
    lists them; a file's version (size, modification time, inode or ETag) changes whenever it is replaced."""
    fs, path = filesystem(folder)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return {}
    prefix = protocol_prefix(folder)
    return {relative_to(prefix + name, folder): f"{info.get('size')}:{info.get('mtime', info.get('LastModified'))}:"
                                                 f"{info.get('ino', info.get('ETag'))}"
            for name, info in fs.find(path, detail=True).items() if name.lower().endswith(".parquet")}


def remove(uri: str) -> None:
    """Delete the file ``uri`` if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path)


def read_bytes(uri: str) -> bytes:
    """The whole content of ``uri``."""
    with fsspec.open(uri, "rb") as handle:
        return handle.read()


READ_TIMEOUT_S = 60.0
"""How long one read of an input may stall before that input is given up (see :class:`BoundedReader`)."""
READ_CHUNK = 1 << 20

_KINDS = ((stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory"))


class NotRegularFile(SerError, OSError):
    """An input that is not a regular file (a FIFO, socket, device, folder): reading it could block forever."""


def _file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


class BoundedReader(io.RawIOBase):
    """A read-only file whose every read runs in a helper thread and gives up after ``timeout_s``.

    A read that stalls (a stuck network mount, a server that stops answering) ends the input instead of the job:
    it returns end-of-file from then on and :attr:`stalled` says why. Data is read in chunks of at least
    :data:`READ_CHUNK` into the helper's own buffer, so a read that finishes late writes nowhere.
    """

    def __init__(self, handle: BinaryIO, timeout_s: float = READ_TIMEOUT_S):
        super().__init__()
        self._handle, self.timeout_s = handle, timeout_s
        self.stalled: str | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def close(self) -> None:
        if self.stalled is None:  # a stalled handle stays with its stuck helper thread
            self._handle.close()
        super().close()

    def readinto(self, buffer) -> int:
        if self.stalled is not None:
            return 0
        result: list = []
        helper = threading.Thread(target=lambda: result.append(_read_or_error(self._handle, len(buffer))), daemon=True,
                                  name="ser-read")
        helper.start()
        helper.join(self.timeout_s)
        if not result:
            self.stalled = f"a read stalled for more than {self.timeout_s:g} s"
            return 0
        data = result[0]
        if isinstance(data, BaseException):
            raise data
        buffer[: len(data)] = data
        return len(data)


def _read_or_error(handle: BinaryIO, size: int) -> bytes | BaseException:
    try:
        return handle.read(size)
    except Exception as err:  # handed to the reading thread, which raises it
        return err


def open_input(uri: str, timeout_s: float = READ_TIMEOUT_S) -> tuple[io.BufferedReader, int]:
    """Open an input for reading: ``(handle, size in bytes)``; ``handle.raw`` is its :class:`BoundedReader`.

    Only regular files are inputs: anything else local (FIFO, socket, device, folder) raises
    :class:`NotRegularFile` without being opened; the open itself does not block (``O_NONBLOCK``), and what is
    opened is checked again. Every read is bounded by ``timeout_s``.
    """
    fs, path = filesystem(uri)
    if is_remote(uri):
        handle, size = fs.open(path, "rb"), fs.size(path)
    else:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"not a regular file: {_file_kind(mode)}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # replaced between the two looks
                raise NotRegularFile(f"not a regular file: {_file_kind(info.st_mode)}")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        handle, size = os.fdopen(fd, "rb", buffering=0), info.st_size
    return io.BufferedReader(BoundedReader(handle, timeout_s), READ_CHUNK), size


def read_input(uri: str, limit: int, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """At most ``limit + 1`` bytes of the input ``uri`` (so that a caller sees when it is larger), through
    :func:`open_input`; a read that stalls raises :class:`TimeoutError`."""
    handle, _ = open_input(uri, timeout_s)
    with handle:
        data = handle.read(limit + 1)
        if handle.raw.stalled:
            raise TimeoutError(f"{uri}: {handle.raw.stalled}")
    return data


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

    Locally the bytes go to a temporary sibling that is renamed into place (and removed if writing fails, the
    error then naming ``uri``'s path); on object stores a single PUT is already all-or-nothing.
    """
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, say: leave nothing behind, and say which file could not be written
        if os.path.exists(tmp):
            os.remove(tmp)
        raise type(err)(err.errno, err.strerror, path) from None


def write_parquet_atomic(table: pa.Table, uri: str) -> None:
    """Write ``table`` as one Parquet file at ``uri``, atomically (see :func:`write_bytes_atomic`)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    write_bytes_atomic(uri, sink.getvalue())


def read_parquet(uri: str) -> pa.Table:
    """Read one Parquet file or a folder of them (a folder read takes every file in it: see :func:`read_parquet_parts`)."""
    fs, path = filesystem(uri)
    return pq.read_table(path, filesystem=fs)


def read_parquet_parts(folder: str, schema: pa.Schema) -> pa.Table:
    """The ``*.parquet`` files under ``folder`` (never temporaries), ``schema``'s columns only, as one table."""
    parts = []
    for name in sorted(parquet_files(folder)):
        fs, path = filesystem(join(folder, name))
        parts.append(pq.read_table(path, filesystem=fs, columns=schema.names).cast(schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def remove_temporaries(folder: str) -> list[str]:
    """Delete the ``*.tmp-*`` files an interrupted local :func:`write_bytes_atomic` left under ``folder``.

    Object stores never hold any (a PUT is atomic). Only call this while no other process writes there.
    """
    if is_remote(folder) or not os.path.isdir(folder):
        return []
    fs, path = filesystem(folder)
    leftovers = [p for p in fs.find(path) if ".tmp-" in posixpath.basename(p)]
    for leftover in leftovers:
        fs.rm(leftover)
    return leftovers


# ------------------------------------------------------------------------------ conditional writes


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _local_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path + ".lock"`` (released by the kernel if the process dies)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_versioned(uri: str) -> tuple[bytes | None, str | None]:
    """``(content, version)`` of a small object, ``(None, None)`` when absent; the version feeds :func:`write_if`."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.invalidate_cache(path)
        if not fs.exists(path):
            return None, None
        version = fs.info(path)["ETag"]
        return fs.cat_file(path), version
    with _local_lock(path):
        if not os.path.exists(path):
            return None, None
        data = read_bytes(path)
    return data, _digest(data)


def write_if(uri: str, data: bytes, version: str | None) -> str | None:
    """Write ``data`` only if ``uri`` is still at ``version`` (``None``: only if absent); the new version, or ``None``.

    S3: a conditional PUT (``If-None-Match: *`` or ``If-Match: <ETag>``). Locally: compare and replace under an
    exclusive ``flock``.
    """
    fs, path = filesystem(uri)
    if is_remote(uri):
        try:
            if version is None:
                response = fs.pipe_file(path, data, mode="create")
            else:
                response = fs.pipe_file(path, data, IfMatch=version)
        except (FileExistsError, OSError) as err:
            if isinstance(err, FileExistsError) or "pre-condition" in str(err) or "PreconditionFailed" in str(err):
                return None
            raise
        return response["ETag"]
    with _local_lock(path):
        current = read_bytes(path) if os.path.exists(path) else None
        if (current is None) != (version is None) or (current is not None and _digest(current) != version):
            return None
        write_bytes_atomic(uri, data)
    return _digest(data)
