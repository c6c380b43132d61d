"""Idempotency keys: what makes a retried write safe. Part of every writing interface.

A client makes one key per write it means (`new_key`) and sends it with every try of that write;
the owning service stores it under a UNIQUE constraint (`examples.flix.writes`), so the write is
applied once however many tries reach it.
"""

from __future__ import annotations

import re
import secrets

import herd
from examples.flix.ids import MAX_ID

#: 16 to 64 URL-safe characters: `new_key` makes 22.
KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


class KeyReused(herd.ServiceError):
    """The idempotency key was already used for a different write."""

    key: str


class BadKey(herd.ServiceError):
    """An idempotency key must be 16 to 64 of A-Z a-z 0-9 _ -."""

    key: str


class InvalidWrite(herd.ServiceError):
    """A write names an id no entity can have (outside 1..2**63 - 1)."""


def new_key() -> str:
    """A fresh random key for one write."""
    return secrets.token_urlsafe(16)


def check_key(key: str) -> str:
    """`key` if it is a valid idempotency key; raises `BadKey`."""
    if KEY.fullmatch(key) is None:
        raise BadKey("an idempotency key is 16 to 64 of A-Z a-z 0-9 _ -", key=key[:64])
    return key


def check_ids(**ids: int) -> None:
    """Raise `InvalidWrite` unless every id is one an entity can have."""
    for name, value in ids.items():
        if not 1 <= value <= MAX_ID:
            raise InvalidWrite(f"{name} must be an id from 1 to {MAX_ID}, not {value}")
