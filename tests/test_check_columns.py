"""A batch's fields are checked column by column (``checks._checked_all``);
the answer must be the per-check rule's (``_checked_fields``) for every batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ceir.service.checks import CheckQuery, _checked_all, _checked_fields

# Digits, a plus, a letter, a non-ASCII digit: what the rules tell apart.
ALPHABET = st.sampled_from("0123456789+a\u0663")
FIELD = st.one_of(
    st.just(""),
    st.text(ALPHABET, max_size=17),
    st.text(st.sampled_from("0123456789"), min_size=5, max_size=16),
    st.builds(lambda d: "+" + d, st.text(st.sampled_from("0123456789"), min_size=7, max_size=16)),
    st.text(st.sampled_from("1"), min_size=60, max_size=70),
)
QUERY = st.builds(CheckQuery, FIELD, FIELD, FIELD)


@given(st.lists(QUERY, min_size=1, max_size=8))
def test_columns_agree_with_the_per_check_rule(queries: list[CheckQuery]) -> None:
    one_by_one = [_checked_fields(query) for query in queries]
    expected = None if None in one_by_one else one_by_one
    assert _checked_all(queries) == expected


def test_a_good_batch_gives_the_msisdn_digits() -> None:
    queries = [
        CheckQuery("352099001761481", "510101234567890", "+6281234567890"),
        CheckQuery("35209900176148", "", ""),
    ]
    assert _checked_all(queries) == [
        ("352099001761481", "510101234567890", "6281234567890"),
        ("35209900176148", "", ""),
    ]


def test_a_lone_plus_is_a_wrong_msisdn_not_a_missing_one() -> None:
    assert _checked_all([CheckQuery("35209900176148", "", "+")]) is None
