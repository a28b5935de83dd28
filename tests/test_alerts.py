"""The worker's alerts, and how the CLI shows them."""

from __future__ import annotations

from rich.text import Text

from remotelab.cli import render
from remotelab.worker.alerts import Alerts
from remotelab.worker.link import Link


def test_an_alert_is_raised_once_keeps_its_time_and_closes():
    now = [100.0]
    alerts = Alerts(clock=lambda: now[0])
    raised, changes = [], []
    alerts.on_raise.append(raised.append)
    alerts.on_change.append(changes.append)
    first = alerts.raise_("k", "stalled", "no progress for 60 s")
    now[0] = 200.0
    second = alerts.raise_("k", "stalled", "no progress for 160 s")
    assert second.since == first.since == 100.0 and second.message.endswith("160 s")
    assert [a.key for a in raised] == ["k"]  # heard once, not at each update
    assert alerts.clear("k") is not None and alerts.open() == []
    assert alerts.clear("k") is None
    assert len(changes) == 3


def test_a_listener_that_fails_does_not_break_the_worker():
    alerts = Alerts()
    alerts.on_raise.append(lambda alert: 1 / 0)
    alerts.raise_("k", "disk", "nearly full")
    assert [a.kind for a in alerts.open()] == ["disk"]


def test_the_link_says_since_when_and_backs_off_to_its_cap():
    alerts = Alerts()
    link = Link("Prefect", alerts, first=0.5, cap=2.0, clock=lambda: 0.0)
    delays = [link.failed(ConnectionError("refused")) for _ in range(4)]
    assert delays == [0.5, 1.0, 2.0, 2.0] and link.retry_in == 2.0
    (alert,) = alerts.open()
    assert alert.message.startswith("Prefect unreachable since") and not link.reachable
    assert link.describe()["outages"] == 1 and "refused" in link.describe()["last_error"]
    link.ok()
    assert link.reachable and alerts.open() == [] and link.retry_in == 0.0
    assert link.check(ValueError("not an outage")) is None and link.reachable


def test_the_cli_shows_an_alert_as_text_never_as_markup():
    alert = {
        "kind": "stalled",
        "message": "plan [/] said [bold]x",
        "since": "2026-12-03T02:14:00+00:00",
    }
    line = render.alert_line(alert)
    plain = Text.from_markup(line).plain
    assert "plan [/] said [bold]x" in plain and "2026-12-03 02:14:00" in plain
