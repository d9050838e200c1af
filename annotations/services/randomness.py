"""All randomness of an audit flows from its secret seed through named streams.

A stream is a ``random.Random`` seeded with HMAC-SHA256(seed, purpose): reproducible for whoever
holds the seed, unpredictable for everyone else, and independent across purposes.
"""

import base64
import hashlib
import hmac
import random
import string

import numpy as np

# 80 random bits as 16 base32 characters: 2**80 ≈ 1.2e24, so collisions even at a billion
# steps are ~4e-7 likely (and the unique index turns one into a loud failure, not a leak).
PUBLIC_ID_BYTES = 10
PUBLIC_ID_LENGTH = 16


def _stream_seed(seed: str, purpose: str) -> int:
    digest = hmac.new(seed.encode(), purpose.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big")


# Domain separation: a seed used elsewhere (a batch's --seed, another tool) gives another key.
_AUDIT_SECRET_PURPOSE = "stepaudit/audit-secret/v1:"


def audit_secret_from_seed(seed: str, slug: str) -> str:
    """The audit's secret (``blinding_seed``) for an audit created with ``seed``.

    HMAC-SHA256 keyed by the seed over a fixed label and the audit's slug, as 64 hex digits:
    the same seed gives two audits different secrets, and the secret reveals nothing of the
    seed. Whoever holds the seed can recompute the secret, hence every blind code, pseudonym
    and order (docs/formats.md, "Seeds").
    """
    message = (_AUDIT_SECRET_PURPOSE + slug).encode()
    return hmac.new(seed.encode(), message, hashlib.sha256).hexdigest()


def seeded_random(seed: str, purpose: str) -> random.Random:
    return random.Random(_stream_seed(seed, purpose))


def seeded_generator(seed: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng(_stream_seed(seed, purpose))


def public_ids(rng: random.Random, count: int) -> list[str]:
    """``count`` random public ids drawn from the stream (no order, no content in them)."""
    if count <= 0:
        return []
    # One draw and one base32 pass for the whole batch: 10 bytes map to exactly 16 characters.
    blob = rng.getrandbits(8 * PUBLIC_ID_BYTES * count).to_bytes(PUBLIC_ID_BYTES * count, "big")
    text = base64.b32encode(blob).decode("ascii").lower()
    return [text[i : i + PUBLIC_ID_LENGTH] for i in range(0, len(text), PUBLIC_ID_LENGTH)]


def blind_code_sequence(seed: str) -> list[str]:
    """The audit's blind codes in the order conditions receive them: a seeded permutation."""
    letters = list(string.ascii_uppercase)
    seeded_random(seed, "blind-codes").shuffle(letters)
    pairs = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    seeded_random(seed, "blind-codes-2").shuffle(pairs)
    return [f"Arm {code}" for code in letters + pairs]
