"""The small value languages inside policies: durations, versions, days, hours, globs."""

from __future__ import annotations

import ipaddress

import pytest

from verity.policy import values


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), (" 2 h ", 7200)],
)
def test_durations(text: object, seconds: int) -> None:
    assert values.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1w", "-5m", 0, True, "1.5h"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        values.duration(text)


@pytest.mark.parametrize(
    ("have", "floor", "ok"),
    [("14.2.1", "14.2", True), ("14", "14.0", True), ("14.0.0", "14", True), ("13.9.9", "14.0", False),
     ("10.0.19045", "10.0.19044", True), ("10.0.9999", "10.0.19045", False), ("10.0.19045-beta", "10.0.19045", True),
     ("v15", "14", True), ("", "1", False), ("abc", "1", False), ("14.10", "14.9", True)],
)  # fmt: skip
def test_versions_compare_number_by_number(have: str, floor: str, ok: bool) -> None:
    parsed_have, parsed_floor = values.version_tuple(have), values.version_tuple(floor)
    assert (
        parsed_have is not None and parsed_floor is not None and parsed_have >= parsed_floor
    ) is ok


@pytest.mark.parametrize(
    ("text", "days"),
    [("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0}), (["mon", "wed"], {0, 2}),
     ("any", set(range(7))), ("Tue", {1})],
)  # fmt: skip
def test_days(text: object, days: set[int]) -> None:
    assert values.days(text) == frozenset(days)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("08:00-18:00", (480, 1080)),
        ("22:00-06:00", (1320, 360)),
        ("00:00-24:00", (0, 1440)),
        ("9:30-10:45", (570, 645)),
    ],
)
def test_hours(text: str, span: tuple[int, int]) -> None:
    assert values.hours(text) == span


@pytest.mark.parametrize(
    "text", ["8-18", "08:00", "24:00-01:00", "10:00-10:00", "24:30-25:00", "08:60-09:00"]
)
def test_bad_hours(text: str) -> None:
    with pytest.raises(ValueError, match=r"hour range|time of day|cannot start"):
        values.hours(text)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [("/docs/**", "/docs", True), ("/docs/**", "/docs/a/b", True), ("/docs/**", "/docsx", False),
     ("/docs/*", "/docs/a", True), ("/docs/*", "/docs/a/b", False), ("/a/*/c", "/a/b/c", True),
     ("/a/*/c", "/a/b/d/c", False), ("/x**", "/x/y", True), ("/api/v1/*.json", "/api/v1/a.json", True),
     ("/api/v1/*.json", "/api/v1/a/b.json", False), ("/a.b", "/aXb", False)],
)  # fmt: skip
def test_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert (values.glob_regex(pattern).match(path) is not None) is matches


@pytest.mark.parametrize("text", ["de", "DE", " fr "])
def test_regions(text: str) -> None:
    assert values.region(text) == text.strip().upper()


@pytest.mark.parametrize("text", ["DEU", "D", "12", True])
def test_bad_regions(text: object) -> None:
    with pytest.raises(ValueError, match="ISO 3166"):
        values.region(text)


@pytest.mark.parametrize(
    "text", ["spiffe://example.org/ns/*/sa/web", "spiffe://td/**", "spiffe://td"]
)
def test_spiffe_patterns(text: str) -> None:
    assert values.spiffe_pattern(text) == text


@pytest.mark.parametrize(
    "text", ["https://x/y", "spiffe://Upper/x", "spiffe://td//x", "spiffe://td/a b"]
)
def test_bad_spiffe_patterns(text: str) -> None:
    with pytest.raises(ValueError, match="SPIFFE"):
        values.spiffe_pattern(text)


def test_ipv4_mapped_range_is_normalized_to_the_ipv4_range_it_maps() -> None:
    net, warning = values.network("::ffff:10.0.0.0/104")
    assert net == ipaddress.IPv4Network("10.0.0.0/8")
    assert warning is not None
    assert "IPv4-mapped" in warning
    assert "'10.0.0.0/8'" in warning


def test_cidr_with_host_bits_set_means_its_network() -> None:
    net, warning = values.network("192.168.1.1/24")
    assert net == ipaddress.IPv4Network("192.168.1.0/24")
    assert warning is not None
    assert "host bits are set" in warning


@pytest.mark.parametrize("text", ["10.0.0.0/8", "10.1.2.3", "2001:db8::/32", "::1"])
def test_usual_cidr_spellings_load_without_warning(text: str) -> None:
    net, warning = values.network(text)
    assert str(net) == str(ipaddress.ip_network(text))
    assert warning is None


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0", "", "example.com/8"])
def test_bad_cidrs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        values.network(text)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("department", ("department",)),
        ("realm_access.roles", ("realm_access", "roles")),
        ("https://example\\.com/roles", ("https://example.com/roles",)),
        ("a\\\\.b", ("a\\", "b")),
    ],
)
def test_claim_paths_split_on_unescaped_dots(text: str, segments: tuple[str, ...]) -> None:
    assert values.claim_path(text) == segments
    assert values.claim_path(values.claim_path_text(segments)) == segments


@pytest.mark.parametrize("text", ["a..b", ".a", "a.", "a\\"])
def test_bad_claim_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="claim path"):
        values.claim_path(text)
