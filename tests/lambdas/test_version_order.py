"""lambdas.contracts.is_newer: the one version-order rule (docs/contracts.md "Version order")."""

from lambdas.contracts import VersionStamp, is_newer
from lambdas.identity import sequencer_key


def test_sequencers_compare_left_padded():
    # GIVEN two events of one key whose sequencers differ in length
    # WHEN / THEN the longer, padded comparison decides, and an event is never newer than itself
    assert is_newer(VersionStamp("1A0"), VersionStamp("FF"))
    assert not is_newer(VersionStamp("FF"), VersionStamp("1A0"))
    assert not is_newer(VersionStamp("0FF"), VersionStamp("FF"))
    assert sequencer_key("ff") == "0" * 62 + "FF"


def test_listed_version_beats_a_late_event_of_an_older_version():
    # GIVEN a version found by listing (no sequencer) at 12:00:05 and a late event of a version written at 12:00:01
    listed = VersionStamp(None, "2026-12-01T12:00:05.000Z", "v2")
    late = VersionStamp("00A1", "2026-12-01T12:00:01.250Z", "v1")
    # WHEN / THEN the listed version stays the newest
    assert is_newer(listed, late)
    assert not is_newer(late, listed)


def test_same_second_prefers_the_event_then_the_version_id():
    # GIVEN versions within one second
    event = VersionStamp("00B2", "2026-12-01T12:00:05.900Z", "a")
    listed = VersionStamp(None, "2026-12-01T12:00:05.000Z", "z")
    # WHEN / THEN the event wins over the listing, and two listed ones order by version id
    assert is_newer(event, listed) and not is_newer(listed, event)
    assert is_newer(VersionStamp(None, "2026-12-01T12:00:05Z", "b"), VersionStamp(None, "2026-12-01T12:00:05Z", "a"))
