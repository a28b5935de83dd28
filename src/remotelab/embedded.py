"""The whole embedded installation of ``remotelab demo``, in one process.

:class:`Embedded` starts, on loopback: a Prefect server on SQLite, the stream proxy, the run
store, a worker on the lab (the shipped simulated one by default) and the gateway; it makes
a demo manager and researcher with fresh tokens. :meth:`Embedded.stop` takes it all down in
the reverse order, the worker leaving the lab's devices safe.

It composes the gateway (:mod:`remotelab.api`) with a worker (:mod:`remotelab.worker`),
which is why it lives above both: the gateway never imports the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpx

from remotelab.api import AuthStore, LabService, create_app, dashboard_url
from remotelab.api.server import GatewayServer
from remotelab.errors import AccountExistsError, PlanValidationError
from remotelab.settings import private_dir

log = logging.getLogger(__name__)

DEMO_USERS = {"demo-manager": "manager", "demo-researcher": "researcher"}
#: the plans whose examples the demo queues: short ones on disjoint devices (the arm and the
#: spectrometer; the heater and its probe; the titration station), so they run side by side
QUICK_EXAMPLES = ("measure_samples", "temperature_ramp", "titration")


def stream_addresses(
    host: str, stream_in: str | None = None, stream_out: str | None = None
) -> tuple[str, str]:
    """The stream proxy addresses of an embedded installation: those given, else
    ``REMOTELAB_STREAM_IN``/``REMOTELAB_STREAM_OUT`` when set, else any free port on ``host``."""
    from remotelab.settings import get_settings

    settings = get_settings()
    given = settings.model_fields_set

    def pick(explicit: str | None, field: str) -> str:
        if explicit:
            return explicit
        return getattr(settings, field) if field in given else f"tcp://{host}:*"

    return pick(stream_in, "stream_in"), pick(stream_out, "stream_out")


#: the description of the tokens the demo makes for its users
DEMO_TOKEN = "remotelab demo"


def fresh_demo_tokens(auth: AuthStore) -> dict[str, str]:
    """The demo users (made if missing), each with a new token; the tokens earlier demos made
    for them are revoked, so only the ones this demo printed work."""
    tokens = {}
    for user, role in DEMO_USERS.items():
        with contextlib.suppress(AccountExistsError):
            auth.add_user(user, role)
        for old in auth.tokens(user):
            if old.description == DEMO_TOKEN and old.revoked is None:
                auth.revoke_token(old.id)
        tokens[user] = auth.create_token(user, DEMO_TOKEN).token
    return tokens


class Embedded:
    """Everything of a one-machine installation, started and stopped together.

    ``api_url``: use this Prefect API instead of starting a Prefect server.
    ``lab_options``: more keywords of ``load_lab`` (``seed``…).
    ``stream_in``/``stream_out``: the addresses the stream proxy binds; default
    ``REMOTELAB_STREAM_IN``/``REMOTELAB_STREAM_OUT`` if set, else free ports on ``host``.
    Once started, :attr:`proxy` has the addresses actually bound. ``simulate``: serve the
    lab file's simulated twin (``load_lab(simulate=True)``).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        lab_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        prefect_port: int | None = None,
        speed: float | None = None,
        api_url: str | None = None,
        write_slots: int | None = None,
        stream_in: str | None = None,
        stream_out: str | None = None,
        simulate: bool = False,
        lab_options: dict[str, Any] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.lab_file = lab_file
        self.simulate = simulate
        self.host, self.port, self.prefect_port = host, port, prefect_port
        self.speed = speed
        self.lab_options = dict(lab_options or {})
        self.api_url = api_url
        self.write_slots = write_slots or int(os.environ.get("REMOTELAB_WRITE_SLOTS", "4"))
        self.stream_in, self.stream_out = stream_addresses(host, stream_in, stream_out)
        self.prefect: Any = None
        self.tokens: dict[str, str] = {}
        self._stack: list[tuple[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The lab manager's dashboard on the gateway."""
        return dashboard_url(self.url)

    def start(self) -> Embedded:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from remotelab.data import RunStore
        from remotelab.lab import load_lab
        from remotelab.queue import ExperimentQueue, PrefectServer
        from remotelab.stream import StreamProxy, StreamPublisher
        from remotelab.worker import build_worker

        private_dir(self.data_dir)
        if self.api_url is None:
            self.prefect = PrefectServer(
                self.data_dir / "prefect", host=self.host, port=self.prefect_port
            ).start()
            self._stack.append(("Prefect server", self.prefect.stop))
            self.api_url = self.prefect.api_url
        options = {"simulate": self.simulate, **self.lab_options}
        self.lab = load_lab(self.lab_file, speed=self.speed, **options)
        self._stack.append(("lab", self.lab.close))
        self.proxy = StreamProxy(self.stream_in, self.stream_out).start()
        self._stack.append(("stream proxy", self.proxy.stop))
        self.store = RunStore(self.data_dir / "runs.sqlite")
        self._stack.append(("run store", self.store.close))
        self.publisher = StreamPublisher(self.proxy.in_address, lab=self.lab.name)
        self._stack.append(("stream publisher", self.publisher.close))
        self.worker = build_worker(
            self.lab,
            api_url=self.api_url,
            store=self.store,
            publisher=self.publisher,
            poll_interval=0.5,
            outbox=self.data_dir / "outbox" / f"{self.lab.name}.sqlite",
        )
        self.worker.start()
        self._stack.append(("worker", self._stop_worker))
        self._worker_thread = threading.Thread(
            target=self.worker.run_forever, name="remotelab-worker", daemon=True
        )
        self._worker_thread.start()
        self.queue = ExperimentQueue(self.lab, api_url=self.api_url)
        self._stack.append(("queue client", self.queue.close))
        self.auth = AuthStore(self.data_dir / "auth.sqlite")
        self._stack.append(("user database", self.auth.close))
        self.tokens.update(fresh_demo_tokens(self.auth))
        app = create_app(
            auth=self.auth,
            labs=[LabService(self.lab, self.queue, write_slots=self.write_slots)],
            store=self.store,
            stream=self.proxy.out_address,
        )
        self.gateway = GatewayServer(app, self.host, self.port).start()
        self._stack.append(("gateway", self.gateway.stop))
        httpx.get(f"{self.url}/openapi.json", timeout=10).raise_for_status()

    def _stop_worker(self) -> None:
        self.worker.shutdown("remotelab demo stopped")
        self._worker_thread.join(60)
        self.worker.close()

    def submit_examples(self) -> list[str]:
        """Queue each plan's example as the demo researcher (as the gateway would); ids."""
        from remotelab.plans.registry import registry_for

        ids = []
        registry = registry_for(self.lab)
        for plan in registry.describe():
            if plan["name"] in QUICK_EXAMPLES and plan["example"]:
                try:
                    exp = self.queue.submit(
                        plan["name"],
                        plan["example"],
                        submitter="demo-researcher",
                        role="researcher",
                    )
                except PlanValidationError as exc:  # e.g. its sample used up by an earlier demo
                    log.warning("the %s example was not queued: %s", plan["name"], exc)
                    continue
                ids.append(exp.id)
        return ids

    def stop(self) -> None:
        """Take everything down, last started first."""
        while self._stack:
            what, stop = self._stack.pop()
            try:
                stop()
            except Exception as exc:
                log.warning("stopping the %s failed: %s", what, exc)

    def __enter__(self) -> Embedded:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "DEMO_TOKEN",
    "DEMO_USERS",
    "QUICK_EXAMPLES",
    "Embedded",
    "GatewayServer",
    "fresh_demo_tokens",
    "stream_addresses",
]
