"""Pseudonymous trace and question ids: what a researcher sees until an admin unblinds.

Imported ids often name the arm (``teacher-q03``), so while an audit is blinded every
researcher-facing surface shows ``T-…`` / ``Q-…`` instead. A pseudonym is
HMAC-SHA256(key, external id) under a key derived from the audit's secret blinding seed and a
domain tag (``pseudonym:trace`` / ``pseudonym:question``), its first 80 bits written as 16
base32 characters:

- stable: the same external id gives the same pseudonym in every report, table and export of
  the audit, so exported tables join on it (and a plan's exclusions keep meaning the same trace);
- unguessable: without the seed nobody can compute the pseudonym of a guessed id
  (``teacher-q03``), so a pseudonym tells nothing about the id behind it;
- collision-free in practice: 80 bits is the public-id size (``randomness.PUBLIC_ID_BYTES``);
  at 1,000,000 traces the chance of any two sharing a pseudonym is ~4e-13.

Trace and question pseudonyms are independent (different keys), so equal external ids of a
trace and a question do not show up as equal pseudonyms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Literal

from annotations.models import Audit, Question, Trace
from annotations.services.randomness import PUBLIC_ID_BYTES, PUBLIC_ID_LENGTH
from auditapp.exceptions import ConflictError

__all__ = [
    "PSEUDONYM_PREFIXES",
    "IdKind",
    "audit_ids_shown",
    "id_pseudonyms",
    "pseudonym_map_list",
]

IdKind = Literal["trace", "question"]
PSEUDONYM_PREFIXES: dict[str, str] = {"trace": "T-", "question": "Q-"}


def _key(seed: str, kind: IdKind) -> hmac.HMAC:
    if kind not in PSEUDONYM_PREFIXES:
        raise ValueError(f"kind must be one of {', '.join(PSEUDONYM_PREFIXES)}, not {kind!r}")
    subkey = hmac.new(seed.encode(), f"pseudonym:{kind}".encode(), hashlib.sha256).digest()
    return hmac.new(subkey, digestmod=hashlib.sha256)


def id_pseudonyms(*, seed: str, kind: IdKind, external_ids: Iterable[str]) -> list[str]:
    """The pseudonym of each external id, in order (pass unique ids: cost is per id).

    >>> id_pseudonyms(seed="s", kind="trace", external_ids=["teacher-q03"])
    ['T-Z46WFL23RQOU4ENA']
    """
    base = _key(seed, kind)
    digests = []
    for external_id in external_ids:
        # copy() reuses the keyed inner/outer state: 1.7 µs per id instead of 2.5 µs.
        mac = base.copy()
        mac.update(str(external_id).encode("utf-8"))
        digests.append(mac.digest()[:PUBLIC_ID_BYTES])
    if not digests:
        return []
    text = base64.b32encode(b"".join(digests)).decode("ascii")
    prefix = PSEUDONYM_PREFIXES[kind]
    return [prefix + text[i : i + PUBLIC_ID_LENGTH] for i in range(0, len(text), PUBLIC_ID_LENGTH)]


def audit_ids_shown(*, audit: Audit, kind: IdKind, external_ids: Sequence[str]) -> list[str]:
    """The ids a researcher may see for ``external_ids``: pseudonyms while the audit is
    blinded, the external ids themselves once it is unblinded."""
    if audit.unblinded_at is not None:
        return [str(e) for e in external_ids]
    return id_pseudonyms(seed=audit.blinding_seed, kind=kind, external_ids=external_ids)


def pseudonym_map_list(*, audit: Audit) -> list[tuple[str, str, str]]:
    """``(kind, pseudonym, external_id)`` for every trace and question of an unblinded audit.

    Refused while the audit is blinded: the mapping *is* the unblinding of the ids.
    """
    if audit.unblinded_at is None:
        raise ConflictError(
            "the id mapping is shown once the audit is unblinded", code="still_blinded"
        )
    rows: list[tuple[str, str, str]] = []
    for kind, model in (("trace", Trace), ("question", Question)):
        ids = list(
            model.objects.filter(audit=audit).order_by("pk").values_list("external_id", flat=True)
        )
        pseudonyms = id_pseudonyms(seed=audit.blinding_seed, kind=kind, external_ids=ids)
        rows.extend((kind, p, e) for p, e in zip(pseudonyms, ids, strict=True))
    return rows
