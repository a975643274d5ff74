"""Keys and authenticated encryption for everything medscan keeps outside SQLCipher's own pages.

A random 256-bit data key encrypts the blobs (AES-GCM). The data key is stored wrapped by a key
derived from the user's passphrase with scrypt (memory-hard) and a stored salt, so a rekey only
re-wraps 32 bytes instead of re-encrypting every blob, and a wrong passphrase is detected by the
GCM tag before anything is touched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
DEFAULT_SCRYPT_N = 2**15  # about 32 MiB and 0.1 s per derivation
SCRYPT_R, SCRYPT_P = 8, 1


class WrongKey(Exception):
    """The passphrase does not unlock this data."""


@dataclass(frozen=True)
class KdfParams:
    """What scrypt needs besides the passphrase; stored next to the wrapped key."""

    salt: bytes
    n: int = DEFAULT_SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def fresh(cls, n: int = DEFAULT_SCRYPT_N) -> KdfParams:
        """New scrypt parameters with a random 16-byte salt and cost ``n`` (a power of two)."""
        return cls(salt=os.urandom(16), n=n)

    def encode(self) -> str:
        """The parameters as stored: ``"scrypt$n$r$p$salthex"``."""
        return f"scrypt${self.n}${self.r}${self.p}${self.salt.hex()}"

    @classmethod
    def decode(cls, text: str) -> KdfParams:
        """Parse :meth:`encode` output.

        Raises:
            ValueError: not a scrypt parameter string.
        """
        name, n, r, p, salt = text.split("$")
        if name != "scrypt":
            raise ValueError(f"unknown key derivation {name!r}")
        return cls(salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))


def derive_key(passphrase: str, params: KdfParams) -> bytes:
    """scrypt(passphrase, salt) -> 32-byte key."""
    return hashlib.scrypt(
        passphrase.encode("utf-8"), salt=params.salt, n=params.n, r=params.r, p=params.p,
        maxmem=256 * params.n * params.r + 2**20, dklen=KEY_BYTES,
    )


def encrypt(key: bytes, plaintext: bytes, associated: bytes = b"") -> bytes:
    """nonce || AES-256-GCM(plaintext) with its tag; ``associated`` binds it to a name."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def decrypt(key: bytes, blob: bytes, associated: bytes = b"") -> bytes:
    """AES-GCM decryption of :func:`encrypt` output (12-byte nonce, then ciphertext and tag).

    Args:
        key: the 32-byte key.
        blob: nonce + ciphertext.
        associated: the associated data given to :func:`encrypt` (e.g. the blob id), authenticated, not secret.

    Raises:
        WrongKey: wrong key, wrong associated data, or the bytes were changed.
    """
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)
    except InvalidTag:
        raise WrongKey("authentication failed") from None


def wrap_key(passphrase: str, params: KdfParams, data_key: bytes) -> bytes:
    """Encrypt the database's data key under a key derived (scrypt) from ``passphrase``."""
    return encrypt(derive_key(passphrase, params), data_key, b"medscan-data-key")


def unwrap_key(passphrase: str, params: KdfParams, wrapped: bytes) -> bytes:
    """Recover the data key wrapped by :func:`wrap_key`.

    Raises:
        WrongKey: wrong passphrase.
    """
    return decrypt(derive_key(passphrase, params), wrapped, b"medscan-data-key")


def content_id(data_key: bytes, plaintext: bytes) -> str:
    """Blob name: a keyed hash, so equal contents share a blob but nobody can test a guess."""
    mac_key = hmac.new(data_key, b"medscan-blob-names", hashlib.sha256).digest()
    return hmac.new(mac_key, plaintext, hashlib.sha256).hexdigest()


def hash_passphrase(passphrase: str, n: int = DEFAULT_SCRYPT_N) -> str:
    """Login check for a user account: 'scrypt$n$r$p$salt$hash'."""
    params = KdfParams.fresh(n)
    return f"{params.encode()}${derive_key(passphrase, params).hex()}"


def verify_passphrase(passphrase: str, stored: str) -> bool:
    """Check ``passphrase`` against a stored hash from :func:`hash_passphrase` (constant-time comparison)."""
    head, _, expected = stored.rpartition("$")
    return hmac.compare_digest(derive_key(passphrase, KdfParams.decode(head)).hex(), expected)
