"""The vectorised `/model` decoder reads exactly what a number-by-number bincode reader reads.

The reference below walks the body one BigInt at a time, as the original's serde does; for
any model (small, 63-bit, huge numbers) and any corruption of its bytes, `from_bincode` must
return the same fractions or refuse the body.
"""

from __future__ import annotations

import struct
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from xaynet.core.errors import XaynetError
from xaynet.core.mask.model import GlobalModel


def reference(body: bytes) -> list[Fraction]:
    """Number by number: u64 count, then (i8 sign, u64 digits, u32 LE digits) per term."""
    (count,) = struct.unpack_from("<Q", body)
    pos, terms = 8, []
    for _ in range(2 * count):
        sign, digits = struct.unpack_from("<bQ", body, pos)
        end = pos + 9 + 4 * digits
        if sign not in (-1, 0, 1) or end > len(body):
            raise ValueError("malformed")
        magnitude = int.from_bytes(body[pos + 9 : end], "little")
        if (sign == 0) != (magnitude == 0):
            raise ValueError("sign")
        terms.append(sign * magnitude)
        pos = end
    if any(d == 0 for d in terms[1::2]):
        raise ValueError("zero denominator")
    return [Fraction(n, d) for n, d in zip(terms[0::2], terms[1::2], strict=True)]


numbers = st.one_of(
    st.integers(-(2**31), 2**31),
    st.integers(-(2**63) + 1, 2**63 - 1),
    st.integers(-(2**130), 2**130),
)
fractions = st.builds(Fraction, numbers, numbers.filter(lambda d: d != 0))


@settings(max_examples=300, deadline=None)
@given(st.lists(fractions, max_size=40), st.binary(max_size=12))
def test_decodes_what_was_encoded(values: list[Fraction], trailing: bytes) -> None:
    body = GlobalModel.from_list(values).to_bincode()
    assert GlobalModel.from_bincode(body + trailing).as_fractions() == values  # trailing bytes ignored


@settings(max_examples=500, deadline=None)
@given(st.lists(fractions, min_size=1, max_size=12), st.data())
def test_a_corrupted_body_reads_as_the_reference_reads_it(
    values: list[Fraction], data: st.DataObject
) -> None:
    body = bytearray(GlobalModel.from_list(values).to_bincode())
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(8, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(body)))
    corrupted = bytes(body[:cut])
    try:
        expected: list[Fraction] | None = reference(corrupted)
    except (ValueError, struct.error):
        expected = None
    try:
        got: list[Fraction] | None = GlobalModel.from_bincode(corrupted).as_fractions()
    except XaynetError:
        got = None
    assert got == expected
