"""Seals staff TOTP secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from the
`cryptography` package) under a key derived from IVR_SECRET_KEY with HKDF.

A TOTP secret, unlike a password, must be readable to check a code, so it cannot be
hashed. Sealing it means a copy of the database (a backup, a replica, a read-only
SQL injection) does not give away every agent's second factor: the key lives only
in the service's environment. Rotating IVR_SECRET_KEY makes sealed secrets (and the
recovery codes, which are keyed the same way) unreadable: every account then needs
`ivr users totp-reset`.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Binds the derived key to this one use: no other part of ivr derives the same key.
PURPOSE = b"ivr staff totp secret v1"


class Unreadable(Exception):
    """A sealed value this key cannot open (IVR_SECRET_KEY changed, or tampering)."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, plain: str) -> str:
    """The value encrypted and authenticated, as ASCII text for a database column."""
    return _fernet(secret_key).encrypt(plain.encode()).decode("ascii")


def unseal(secret_key: str, sealed: str) -> str:
    """The plain value; Unreadable when this key did not seal it or it was altered."""
    try:
        return _fernet(secret_key).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise Unreadable("sealed with another key, or altered") from exc
