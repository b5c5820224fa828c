"""Ids: well-formed, and every character of the alphabet about as likely in every place."""

from __future__ import annotations

from collections import Counter

from broker import ids


def _spread(drawn: list[str]) -> None:
    assert all(ids.is_id(i) for i in drawn)
    assert len(set(drawn)) == len(drawn)
    for place in range(ids.ID_LENGTH):
        counts = Counter(i[place] for i in drawn)
        expected = len(drawn) / len(ids.ALPHABET)
        # 20,000 draws: about 556 per character and place, a standard deviation of about 23.
        assert set(counts) == set(ids.ALPHABET)
        assert all(abs(n - expected) < 8 * 23 for n in counts.values()), counts


def test_single_ids_are_uniform() -> None:
    _spread([ids.new_id() for _ in range(20_000)])


def test_a_batch_of_ids_is_uniform_and_exactly_as_long_as_asked() -> None:
    _spread(ids.new_ids(20_000))
    assert [len(ids.new_ids(n)) for n in (0, 1, 2, 3, 1000)] == [0, 1, 2, 3, 1000]
