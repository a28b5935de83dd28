"""The notifier on real local targets: mail through aiosmtpd, JSON posts to a webhook; every
event kind sent; subscriptions' rules; URLs checked and masked; the lab file's section."""

from __future__ import annotations

import threading

import pytest
import yaml
from notify_helpers import closed_port, write_lab

from remotelab.errors import LabFileError, NotificationError
from remotelab.lab.schema import parse_lab
from remotelab.notify import (
    SUBSCRIBABLE,
    Event,
    EventKind,
    Notifier,
    NullNotifier,
    Subscription,
    attach,
    check_url,
    mask_url,
    notifier_of,
)


def test_a_mail_reaches_the_smtp_server_through_a_mailto_url(mailbox):
    target = Subscription(lab="lab1", url=mailbox.url("alice@example.org"))
    event = Event(
        kind=EventKind.experiment_failed,
        lab="lab1",
        experiment_id="0123456789abcdef",
        submitter="alice",
        plan="measure",
        message="measure ended failed: thermometer: injected fault",
    )
    (done,) = Notifier("lab1").deliver(event, [target])
    assert done.ok, done.error
    mail = mailbox.wait_for("alice@example.org", "experiment 01234567 failed")
    assert "[remotelab] lab1" in str(mail["subject"])
    text = mail.get_body(("plain",)).get_content()
    assert "injected fault" in text and "submitter: alice" in text and "plan: measure" in text


def test_every_event_kind_is_posted_to_a_webhook(webhook):
    """``send`` returns at once; every kind, including those other parts raise (worker lost,
    watchdog alert), reaches a target that wants it."""
    notifier = Notifier("lab1", targets=[Subscription(lab="lab1", url=webhook.url())])
    for kind in SUBSCRIBABLE:
        notifier.send(Event(kind=kind, lab="lab1", worker="w7", message=f"this is {kind.value}"))
    assert notifier.flush(30)
    for kind in SUBSCRIBABLE:
        post = webhook.wait_for("/hook", f"this is {kind.value}")
        assert post["title"].startswith("[remotelab] lab1")
    lost = webhook.wait_for("/hook", "this is worker_lost")
    assert "worker w7 lost" in lost["title"]
    notifier.close()


def test_a_target_that_is_down_fails_quietly_and_the_others_still_receive(webhook):
    down = Subscription(lab="lab1", url=f"json://127.0.0.1:{closed_port()}/down")
    notifier = Notifier(
        "lab1", targets=[down, Subscription(lab="lab1", url=webhook.url())], timeout=5
    )
    notifier.send(Event(kind=EventKind.lab_held, lab="lab1", message="held"))
    webhook.wait_for("/hook", "held")
    assert notifier.flush(30)
    failed = [d for d in notifier.sent if not d.ok]
    assert [d.subscription for d in failed] == [down.id]
    (again,) = notifier.deliver(Event(kind=EventKind.test, lab="lab1"), [down])
    assert not again.ok and again.error
    notifier.close()


def test_send_never_waits_for_a_target_that_hangs(silent, webhook):
    """A target that accepts and never answers holds up nothing but its own delivery."""
    hung = Subscription(lab="lab1", url=silent.url())
    notifier = Notifier(
        "lab1", targets=[hung, Subscription(lab="lab1", url=webhook.url())], timeout=60
    )
    returned = threading.Event()

    def sender() -> None:
        for n in range(3):
            notifier.send(Event(kind=EventKind.watchdog_alert, lab="lab1", message=f"alert {n}"))
        returned.set()

    threading.Thread(target=sender, daemon=True).start()
    assert returned.wait(30)
    for n in range(3):
        webhook.wait_for("/hook", f"alert {n}")
    assert silent.accepted.is_set() and not notifier.flush(0)  # still hung, nobody waits
    silent.close()
    notifier.close(timeout=0)


def test_a_failing_subscription_source_leaves_the_lab_file_targets_served(webhook):
    def broken():
        raise ConnectionError("Prefect is unreachable")

    notifier = Notifier(
        "lab1", targets=[Subscription(lab="lab1", url=webhook.url())], subscriptions=broken
    )
    notifier.send(Event(kind=EventKind.worker_lost, lab="lab1", worker="w1", message="gone"))
    webhook.wait_for("/hook", "gone")
    notifier.close()


def test_who_receives_what():
    failed = Event(kind=EventKind.experiment_failed, lab="lab1", submitter="alice")
    approval = Event(kind=EventKind.awaiting_approval, lab="lab1", submitter="bob")
    held = Event(kind=EventKind.lab_held, lab="lab1")
    lab_file = Subscription(lab="lab1", url="json://h/x", events=[EventKind.experiment_failed])
    alice = Subscription(lab="lab1", url="json://h/a", owner="alice")
    bob = Subscription(lab="lab1", url="json://h/b", owner="bob")
    mia = Subscription(lab="lab1", url="json://h/m", owner="mia", role="manager")
    other_lab = Subscription(lab="lab2", url="json://h/o")
    assert lab_file.wants(failed) and not lab_file.wants(held) and not other_lab.wants(failed)
    assert alice.wants(failed) and not bob.wants(failed) and not mia.wants(failed)
    assert bob.wants(approval) and mia.wants(approval) and not alice.wants(approval)
    assert mia.wants(held) and not alice.wants(held)
    only_failed = Subscription(lab="lab1", url="json://h/a", owner="alice", events=["lab_held"])
    assert not only_failed.wants(failed)
    with pytest.raises(ValueError, match="'test' is not an event"):
        Subscription(lab="lab1", url="json://h/a", events=["test"])


def test_urls_are_checked_by_apprise_and_shown_masked():
    assert check_url(" json://127.0.0.1:8080/hook ") == "json://127.0.0.1:8080/hook"
    with pytest.raises(NotificationError, match="apprise has no service 'nope'"):
        check_url("nope://host")
    with pytest.raises(NotificationError, match="not a valid mailto:// URL"):
        check_url("mailto://")
    with pytest.raises(NotificationError, match="not an apprise URL"):
        check_url("alice@example.org")
    mail = "mailto://alice:s3cretpw@smtp.example.org:587?from=lab@example.org&to=a@example.org"
    shown = mask_url(mail)
    assert "s3cretpw" not in shown and "alice:****@smtp.example.org" in shown
    assert "from=lab@example.org" in shown and "a%40example.org" in shown  # who: shown
    assert "retry" not in shown  # only the URL's own arguments, not apprise's defaults
    slack = mask_url("slack://T1234ABCD/B5678EFGH/abcdefghijklmnopqrstuvwx")
    assert "abcdefghijklmnopqrstuvwx" not in slack and slack.startswith("slack://")
    hook = mask_url("json://127.0.0.1/hook?token=hunter2&+X-Api-Key=hunter3")
    assert "hunter2" not in hook and "hunter3" not in hook
    assert "hunter4" not in mask_url("nope://user:hunter4@host/abcdefghijklmnop")


def test_the_lab_file_notify_section_is_validated_with_its_keys(tmp_path):
    path = write_lab(tmp_path, [{"url": "json://127.0.0.1:1/hook", "events": ["lab_held"]}])
    spec = parse_lab(path.read_text())
    assert spec.notify[0].events == [EventKind.lab_held]
    data = yaml.safe_load(path.read_text())
    data["notify"] = [
        {"url": "json://127.0.0.1:1/hook"},
        {"url": "nope://x"},
        {"url": "json://127.0.0.1:1/hook", "events": ["lab_on_fire"]},
        {"url": "json://127.0.0.1:1/hook", "extra": 1},
    ]
    with pytest.raises(LabFileError) as err:
        parse_lab(yaml.safe_dump(data))
    text = str(err.value)
    assert "notify.1.url" in text and "apprise has no service 'nope'" in text
    assert "notify.2.events.0" in text and "notify.3.extra" in text
    assert "notify.0" not in text


def test_a_lab_object_finds_the_notifier_attached_to_it(webhook):
    class Thing:
        name = "lab1"

    lab, other = Thing(), Thing()
    notifier = Notifier("lab1", targets=[Subscription(lab="lab1", url=webhook.url())])
    attach(lab, notifier)
    assert notifier_of(lab) is notifier
    assert isinstance(notifier_of(other), NullNotifier)
    notifier_of(other).send(Event(kind=EventKind.lab_held, lab="lab1", message="not sent"))
    notifier_of(lab).send(Event(kind=EventKind.lab_held, lab="lab1", message="sent"))
    webhook.wait_for("/hook", "sent")
    assert notifier.flush(30) and [p["message"].split("\n")[0] for p in webhook.at()] == ["sent"]
    notifier.close()
