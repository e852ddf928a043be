import datetime as dt

from marketpipe.ingestion import Session, TimeRange
from marketpipe.model.calendar import nyse_calendar


def test_holidays_and_weekends_are_not_sessions() -> None:
    days = nyse_calendar().sessions(TimeRange("2024-12-21", "2025-01-02"))
    assert dt.date(2024, 12, 25) not in days  # Christmas
    assert dt.date(2025, 1, 1) not in days  # New Year
    assert dt.date(2024, 12, 22) not in days  # Sunday
    assert dt.date(2024, 12, 24) in days  # early close, still a session


def test_regular_session_hours_follow_dst_and_early_closes() -> None:
    cal = nyse_calendar()
    winter = cal.window(dt.date(2024, 1, 2), Session.REGULAR)
    assert (winter.start.hour, winter.start.minute, winter.minutes) == (14, 30, 390)
    summer = cal.window(dt.date(2024, 7, 1), Session.REGULAR)
    assert (summer.start.hour, summer.minutes) == (13, 390)
    early = cal.window(dt.date(2024, 11, 29), Session.REGULAR)  # day after Thanksgiving
    assert early.minutes == 210 and early.end.hour == 18


def test_extended_session_is_four_to_eight_new_york() -> None:
    window = nyse_calendar().window(dt.date(2024, 7, 1), Session.EXTENDED)
    assert window.minutes == 16 * 60
    assert (window.start.hour, window.end.hour) == (8, 0)  # 04:00 and 20:00 EDT
