"""Command ids: ``<saga>:<step>[:<purpose>]:<n>:<tag>``, unguessable without the saga's secret.

A reply is accepted only for a command id the saga has pending, so the id is the reply's only
credential. Its readable part names the saga, the step, the purpose (none for a step's own
command; ``undo``, ``start``, ``status``, ``cancel``, ``child``) and the request number ``n``;
``tag`` is the first 16 hex digits of HMAC-SHA256 over that part, keyed by the saga's secret.
The secret (16 bytes, hex) is chosen when the saga starts, from entropy the runtime passes in,
and is kept in the ``started`` event and the state, so replay stays deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sagas.errors import ConfigurationError

__all__ = [
    "CommandRef",
    "check_entropy",
    "command_id",
    "new_secret",
    "parse_command_id",
    "public_command_id",
]

_TAG_LEN = 16
_PURPOSES = frozenset({"undo", "start", "status", "cancel", "child"})


def new_secret(entropy: bytes | None, saga_id: str) -> str:
    """A saga's secret: 16 bytes as hex, from ``entropy`` (at least 16 random bytes).

    Without entropy the secret is derived from the saga id alone, so anyone can compute it: that
    keeps old callers and hand-written tests working, and protects nothing.

    Raises:
        ConfigurationError: ``entropy`` is shorter than 16 bytes.
    """
    if entropy is None:
        return hashlib.sha256(b"sagas-public-secret:" + saga_id.encode()).hexdigest()[:32]
    check_entropy(entropy)
    return hashlib.sha256(entropy).hexdigest()[:32]


def check_entropy(entropy: bytes | None) -> None:
    """Raise ``ConfigurationError`` unless ``entropy`` is ``None`` or at least 16 bytes."""
    if entropy is not None and len(entropy) < 16:
        raise ConfigurationError(
            f"entropy of {len(entropy)} bytes is too short for a saga secret; pass os.urandom(16)"
        )


def command_id(readable: str, secret: str) -> str:
    """``readable`` (``<saga>:<step>[:<purpose>]:<n>``) with its tag appended."""
    tag = hmac.new(bytes.fromhex(secret), readable.encode(), hashlib.sha256).hexdigest()
    return f"{readable}:{tag[:_TAG_LEN]}"


@dataclass(frozen=True)
class CommandRef:
    """The readable parts of a command id.

    Attributes:
        saga_id: the saga that sent it.
        step: the block that sent it.
        purpose: ``do`` for a step's own command; ``undo``, ``start``, ``status``, ``cancel``
            or ``child``.
        n: the request number (per step and purpose; a resend keeps it).
        tagged: the id carries a tag (ids written before tags existed do not).
    """

    saga_id: str
    step: str
    purpose: str
    n: int
    tagged: bool


def _is_tag(part: str) -> bool:
    return len(part) == _TAG_LEN and all(c in "0123456789abcdef" for c in part)


def parse_command_id(cid: str) -> CommandRef | None:
    """The parts of an engine command id, or ``None`` if ``cid`` is not one.

    Step names never hold ``:``; saga ids may, so the id is read from the right.
    """
    parts = cid.split(":")
    tagged = len(parts) > 3 and _is_tag(parts[-1])
    if tagged:
        parts = parts[:-1]
    if len(parts) < 3 or not parts[-1].isdigit():
        return None
    n = int(parts[-1])
    if parts[-2] in _PURPOSES and len(parts) >= 4:
        return CommandRef(":".join(parts[:-3]), parts[-3], parts[-2], n, tagged)
    return CommandRef(":".join(parts[:-2]), parts[-2], "do", n, tagged)


def public_command_id(cid: str) -> str:
    """``cid`` without its tag: what status views may show (it cannot answer the command)."""
    ref = parse_command_id(cid)
    return cid.rsplit(":", 1)[0] if ref is not None and ref.tagged else cid
