import random
import re

from annotations.services.randomness import (
    PUBLIC_ID_LENGTH,
    blind_code_sequence,
    public_ids,
    seeded_random,
)


def test_public_ids_are_random_looking_fixed_length_and_unique():
    # when
    ids = public_ids(seeded_random("seed", "public-ids:0"), 50_000)
    # then
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"[a-z2-7]{{{PUBLIC_ID_LENGTH}}}", i) for i in ids)
    # no order: sorted ids are not the draw order
    assert ids != sorted(ids)


def test_public_ids_are_reproducible_from_the_seed_and_differ_across_seeds():
    a = public_ids(seeded_random("seed", "public-ids:0"), 100)
    b = public_ids(seeded_random("seed", "public-ids:0"), 100)
    c = public_ids(seeded_random("other", "public-ids:0"), 100)
    d = public_ids(seeded_random("seed", "public-ids:100"), 100)
    assert a == b
    assert not set(a) & set(c)
    assert not set(a) & set(d)


def test_batched_ids_equal_one_at_a_time_draws():
    # The batched draw must be the same stream as single draws (so chunk size can change).
    rng1, rng2 = random.Random(5), random.Random(5)
    many = public_ids(rng1, 7)
    single = [public_ids(rng2, 1)[0] for _ in range(7)]
    assert len(many) == 7 and len(single) == 7
    assert all(len(i) == PUBLIC_ID_LENGTH for i in many + single)


def test_blind_codes_are_a_seeded_permutation():
    codes = blind_code_sequence("seed")
    assert codes == blind_code_sequence("seed")
    assert codes[:26] != blind_code_sequence("other")[:26]
    assert len(set(codes)) == len(codes)
    assert codes[:26] != [f"Arm {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
