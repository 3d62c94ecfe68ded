"""Encryption of secrets at rest with the keys of FIELD_ENCRYPTION_KEY.

The first key encrypts; every key decrypts (MultiFernet), so a key is rotated
by putting the new one first and running ``manage.py rotate_keys``.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

PREFIX = "fernet:"


class UndecryptableSecret(Exception):
    """A stored secret that none of the configured keys decrypts."""


class Sealed(str):
    """A secret as stored (``fernet:...``), not decrypted yet.

    Models hold this until the secret is read (accounts.fields), so that loading
    a credential never needs the key: pages, checks and commands that do not
    use the secret keep working when FIELD_ENCRYPTION_KEY cannot decrypt it.
    """

    def __repr__(self) -> str:  # never the ciphertext in a log or a trace
        return "Sealed(...)"


def readable(stored: str) -> bool:
    """Whether the configured keys decrypt this stored secret."""
    try:
        decrypt(stored)
    except UndecryptableSecret:
        return False
    return True


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    if plain == "":
        return ""
    return PREFIX + fernet().encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise UndecryptableSecret("stored secret is not encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret(
            "a stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY "
            "(was the key changed without keeping the old one?)"
        ) from exc


def rotate(stored: str) -> str:
    """The secret encrypted with the first key (raises UndecryptableSecret when no key reads it)."""
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise UndecryptableSecret("stored secret is not encrypted")
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret("no key of FIELD_ENCRYPTION_KEY decrypts it") from exc
