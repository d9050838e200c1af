"""All randomness of an audit flows from its secret seed through named streams.

A stream is a ``random.Random`` seeded with HMAC-SHA256(seed, purpose): reproducible for whoever
holds the seed, unpredictable for everyone else, and independent across purposes.
"""

import hashlib
import hmac
import random
import string

import numpy as np

_PUBLIC_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read aloud
PUBLIC_ID_LENGTH = 16  # 31**16 ≈ 7e23: collisions at a billion steps are ~1e-6 likely


def _stream_seed(seed: str, purpose: str) -> int:
    digest = hmac.new(seed.encode(), purpose.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big")


def seeded_random(seed: str, purpose: str) -> random.Random:
    return random.Random(_stream_seed(seed, purpose))


def seeded_generator(seed: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng(_stream_seed(seed, purpose))


def public_ids(rng: random.Random, count: int) -> list[str]:
    """``count`` random public ids drawn from the stream (no order, no content in them)."""
    alphabet = _PUBLIC_ID_ALPHABET
    n = len(alphabet)
    ids = []
    for _ in range(count):
        value = rng.getrandbits(80)
        chars = []
        for _ in range(PUBLIC_ID_LENGTH):
            value, digit = divmod(value, n)
            chars.append(alphabet[digit])
        ids.append("".join(chars))
    return ids


def blind_code_sequence(seed: str) -> list[str]:
    """The audit's blind codes in the order conditions receive them: a seeded permutation."""
    letters = list(string.ascii_uppercase)
    seeded_random(seed, "blind-codes").shuffle(letters)
    pairs = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    seeded_random(seed, "blind-codes-2").shuffle(pairs)
    return [f"Arm {code}" for code in letters + pairs]
