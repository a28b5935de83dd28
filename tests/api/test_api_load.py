"""Concurrent clients through a real HTTP server: every accepted submission is in the queue
exactly once, and paging through the queue gives each experiment once, in queue order.
No worker serves this lab, so everything stays queued. The full-size load (20 clients × 50,
with timings) is ``benchmarks/api.py``."""

from __future__ import annotations

import threading
from collections import Counter

from api_helpers import free_port

from remotelab import Client
from remotelab.api.server import GatewayServer
from remotelab.errors import ApiError

CLIENTS, EACH = 20, 5


def test_concurrent_submissions_are_queued_exactly_once(site):
    server = GatewayServer(site.app, port=free_port()).start()
    accepted: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def submitter(i: int) -> None:
        token = site.tokens["researcher" if i % 2 else "manager"]
        with Client(server.url, token, lab=site.name, timeout=120) as c:
            barrier.wait()
            for _ in range(EACH):
                try:
                    exp = c.submit("measure", {"detectors": ["thermometer"], "num": 1})
                except ApiError as exc:  # a clear refusal (checked below)
                    with lock:
                        errors.append(exc)
                    continue
                with lock:
                    accepted.append(exp.id)

    try:
        threads = [threading.Thread(target=submitter, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        # an overloaded Prefect server may refuse a submission, but only with a clear 503
        assert all(e.status == 503 for e in errors), errors
        assert len(accepted) + len(errors) == CLIENTS * EACH
        assert len(accepted) >= CLIENTS * EACH // 2
        with Client(server.url, site.tokens["observer"], lab=site.name) as c:
            _, total = c.experiments(limit=1)
            pages, offset = [], 0
            while offset < total:
                page, _ = c.experiments(limit=7, offset=offset)
                pages.extend(page)
                offset += 7
            everything = c.queue()
        listed = Counter(e.id for e in pages)
        assert set(listed) == set(accepted)  # nothing lost, nothing refused got in
        assert max(listed.values()) == 1  # no duplicates across pages
        assert [e.id for e in pages] == [e.id for e in everything]  # pages follow queue order
        assert len(everything) == total == len(accepted)
    finally:
        server.stop()
