"""Fixtures of the notification tests: a real SMTP server and a real webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from notify_helpers import Mailbox, Silent, Webhook


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    yield hook
    hook.shutdown()
    hook.server_close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    target = Silent()
    yield target
    target.close()
