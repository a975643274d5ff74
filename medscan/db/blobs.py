"""Content-addressed, encrypted blob store for large arrays (result volumes, masks, heat maps).

Each blob is one file ``<root>/<id[:2]>/<id>``: magic, nonce and AES-GCM ciphertext whose tag also
covers the id, so a blob cannot be swapped for another. A blob is written to ``<root>/tmp``, fsynced
and renamed into place (then the folder is fsynced) *before* any row points at it; a crash can
therefore leave only unreferenced blobs or temporary files, which ``collect`` removes.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medscan.db.crypto import WrongKey, content_id, decrypt, encrypt

MAGIC = b"MSB1"


class BlobStore:
    """Encrypted blobs under ``root``, named by a keyed hash of their plaintext."""

    def __init__(self, root: str | Path, data_key: bytes) -> None:
        self.root = Path(root)
        self._key = data_key
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """The file of blob ``blob_id`` (64 hex digits) under the store's root.

        Raises:
            ValueError: ``blob_id`` is not a blob id (so no path outside the store can be named).
        """
        if len(blob_id) != 64 or not all(c in "0123456789abcdef" for c in blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def put(self, plaintext: bytes) -> str:
        """Store ``plaintext`` durably; returns its id. Idempotent for equal contents."""
        blob_id = content_id(self._key, plaintext)
        final = self.path(blob_id)
        if final.exists():
            return blob_id
        final.parent.mkdir(exist_ok=True)
        tmp = self.root / "tmp" / f"{blob_id}.{os.getpid()}.{time.monotonic_ns()}"
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + encrypt(self._key, plaintext, blob_id.encode()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """Read and decrypt blob ``blob_id``.

        Raises:
            WrongKey: the file is not a medscan blob, or the data key does not open it (tampered or another database).
            FileNotFoundError: no such blob.
        """
        raw = self.path(blob_id).read_bytes()
        if raw[:4] != MAGIC:
            raise WrongKey(f"blob {blob_id} is not a medscan blob")
        return decrypt(self._key, raw[4:], blob_id.encode())

    def put_array(self, array: np.ndarray) -> str:
        """Store a numpy array (``.npy`` format, no pickles) as a blob; returns its id."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        return self.put(buffer.getvalue())

    def get_array(self, blob_id: str) -> np.ndarray:
        """Read an array stored by :meth:`put_array` (pickles are refused)."""
        return np.load(io.BytesIO(self.get(blob_id)), allow_pickle=False)

    def ids(self) -> set[str]:
        """The ids of every blob file in the store (referenced or not)."""
        return {p.name for p in self.root.glob("??/*") if p.is_file() and len(p.name) == 64}

    def collect(self, referenced: Iterable[str], grace_s: float = 3600.0) -> int:
        """Remove blobs no row references and leftover temporary files older than ``grace_s``.

        The grace period protects a blob that a concurrent writer has stored but not yet
        committed a row for; after a crash, ``grace_s=0`` is safe when no writer is running.
        """
        keep = set(referenced)
        now = time.time()
        removed = 0
        candidates = [self.path(b) for b in self.ids() - keep] + list((self.root / "tmp").iterdir())
        for path in candidates:
            try:
                if now - path.stat().st_mtime >= grace_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
