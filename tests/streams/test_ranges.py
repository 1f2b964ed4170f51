"""HTTP Range parsing (pure)."""

from __future__ import annotations

import pytest

from streams.http.ranges import RangeNotSatisfiable, content_range, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=0-", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("BYTES = 5 - 6", (5, 6)),
        ("bytes=999-999", (999, 999)),
    ],
)
def test_valid_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header", [None, "", "bytes=1-2,4-5", "bits=0-1", "bytes=", "bytes=-", "bytes=9-3",
               "bytes=a-b", "bytes=" + "9" * 30 + "-"],
)  # fmt: skip
def test_ignored_headers_mean_the_whole_representation(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000),
                                               ("bytes=0-0", 0), ("bytes=-5", 0)])  # fmt: skip
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size


def test_content_range() -> None:
    assert content_range(5, 9, 100) == "bytes 5-9/100"
