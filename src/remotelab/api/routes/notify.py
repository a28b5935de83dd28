"""Notification subscriptions of a lab: list, add, remove, test (``remotelab notify …``).

Anyone with a role on the lab lists their own subscriptions; a manager lists the lab's (its
file's targets too). Researchers add and remove their own; managers remove anyone's. A test
sends a notification now to one subscription or to all the caller sees and answers how each
went. URLs are answered and audited masked (their passwords and tokens hidden).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from remotelab.api.auth import Role
from remotelab.api.deps import ERROR_RESPONSES, GW, AuditRecord, Who, audited, served_lab
from remotelab.api.deps import registry_role as role_of
from remotelab.notify import Subscription, mask_url

router = APIRouter(tags=["notifications"], responses=ERROR_RESPONSES)
NOTIFY = "/labs/{lab}/notify"


class SubscriptionCreate(BaseModel):
    """A new subscription: an apprise URL and the events it wants (none: every event)."""

    url: str = Field(description="an apprise URL, e.g. mailto://… or json://host/path")
    events: list[str] = Field(default_factory=list, description="event kinds; none: all")


class SubscriptionInfo(BaseModel):
    """A subscription as the gateway shows it (its URL masked)."""

    id: str
    lab: str
    url: str = Field(description="the apprise URL, its secrets masked")
    events: list[str]
    owner: str | None = Field(None, description="its user; none: a target of the lab file")
    role: str
    created: datetime

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionInfo:
        return cls.model_validate(sub.shown())


class NotifyTest(BaseModel):
    """Which subscription to test (none: all the caller sees)."""

    id: str | None = None


class DeliveryInfo(BaseModel):
    """How one test notification went."""

    subscription: str
    url: str
    ok: bool
    error: str = ""


@router.get(NOTIFY, response_model=list[SubscriptionInfo])
def list_subscriptions(lab: str, gw: GW, who: Who) -> list[SubscriptionInfo]:
    """The caller's subscriptions; a manager's answer: all of the lab's."""
    subs = served_lab(gw, who, lab).queue.subscriptions
    return [SubscriptionInfo.of(s) for s in subs.visible(who.user, role_of(who))]


@router.post(NOTIFY, response_model=SubscriptionInfo, status_code=201)
def add_subscription(
    lab: str, body: SubscriptionCreate, gw: GW, rec: Annotated[AuditRecord, audited("notify.add")]
) -> SubscriptionInfo:
    """Subscribe the caller to the lab's notifications (researchers and up); 422 if apprise
    cannot use the URL or an event is unknown."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    rec.detail = {"url": mask_url(body.url), "events": body.events}
    who.require(Role.researcher, lab, action="subscribing to notifications")
    sub = svc.queue.subscriptions.add(body.url, body.events, user=who.user, role=role_of(who))
    rec.target, rec.status = sub.id, 201
    return SubscriptionInfo.of(sub)


@router.delete(f"{NOTIFY}/{{subscription_id}}", response_model=SubscriptionInfo)
def remove_subscription(
    lab: str,
    subscription_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("notify.remove")],
) -> SubscriptionInfo:
    """Remove a subscription: one's own (a manager: anyone's); 404 if the caller has none
    of that id."""
    who = rec.who
    rec.target = subscription_id
    subs = served_lab(gw, who, lab).queue.subscriptions
    sub = subs.remove(subscription_id, user=who.user, role=role_of(who))
    rec.detail = {"url": mask_url(sub.url), "owner": sub.owner}
    return SubscriptionInfo.of(sub)


@router.post(f"{NOTIFY}/test", response_model=list[DeliveryInfo])
def test_subscriptions(
    lab: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("notify.test")],
    body: Annotated[NotifyTest | None, Body()] = None,
) -> list[DeliveryInfo]:
    """Send a test notification now to one subscription (or to all the caller sees); how
    each went."""
    who = rec.who
    body = body or NotifyTest()
    rec.target = body.id or ""
    queue = served_lab(gw, who, lab).queue
    done = queue.subscriptions.test(
        body.id, user=who.user, role=role_of(who), notifier=queue.notifier
    )
    rec.detail = {"sent": sum(d.ok for d in done), "failed": sum(not d.ok for d in done)}
    return [DeliveryInfo(**d.__dict__) for d in done]


__all__ = ["router"]
