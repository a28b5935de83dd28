"""The Python client of the remote gateway: every route as a typed method.

>>> lab = Client("https://lab.example.org", token="rl_…")
>>> exp = lab.submit("measure", {"detectors": ["thermometer"], "num": 3})
>>> for name, doc in exp.documents():   # live, while it runs
...     print(name)
>>> exp.wait().state
<ExperimentState.completed: 'completed'>
>>> lab.export(exp.run_uids[0], "csv", "out/")

Errors come back as :class:`~remotelab.errors.ApiError` subclasses (``ApiUnauthorized``,
``ApiForbidden``, ``ApiNotFound``, ``ApiConflict``, ``ApiInvalid``), and a plan's rejected
parameters as :class:`~remotelab.errors.PlanValidationError` with the per-parameter
messages of the lab's plan registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from remotelab.client.submission import Event, Submission
from remotelab.errors import (
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiInvalid,
    ApiNotFound,
    ApiUnauthorized,
    ExportError,
    PlanValidationError,
)
from remotelab.queue.models import ExperimentState, Priority

API_PREFIX = "/api/v1"
_BY_STATUS: dict[int, type[ApiError]] = {
    401: ApiUnauthorized,
    403: ApiForbidden,
    404: ApiNotFound,
    409: ApiConflict,
    422: ApiInvalid,
}


def _name(value: Any) -> str:
    """An enum's value, or the text given (the gateway refuses an unknown one: 422)."""
    return str(getattr(value, "value", value))


def _lines(response: httpx.Response) -> Iterator[str]:
    try:
        yield from response.iter_lines()
    except httpx.HTTPError as exc:
        raise ApiError(0, f"the gateway closed the live stream: {exc}") from None


class Client:
    """A session with one remotelab gateway, authenticated by an API token.

    ``lab`` is the default lab of the lab-scoped methods; if not given, the gateway's only
    lab (an :class:`ApiError` if it serves several).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        lab: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )
        self._lab = lab

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _raise(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text or response.reason_phrase}
        detail = str(body.get("detail", "")) if isinstance(body, dict) else str(body)
        kind = body.get("type", "") if isinstance(body, dict) else ""
        errors = body.get("errors", []) if isinstance(body, dict) else []
        if kind == "PlanValidationError":
            plan = detail.split("'")[1] if detail.count("'") >= 2 else ""
            raise PlanValidationError(plan, errors)
        cls = _BY_STATUS.get(response.status_code, ApiError)
        raise cls(response.status_code, detail, kind, errors)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request to ``/api/v1{path}``; raise the typed error of a refusal."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.LocalProtocolError:  # its text would show the header: the token
            raise ApiError(
                0,
                f"the request to {self.url} could not be made: a header holds a character "
                "HTTP does not allow (a token pasted with a line break or a space?)",
            ) from None
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the gateway at {self.url}: {exc}") from None
        self._raise(response)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {}).json()

    def lab_name(self, lab: str | None = None) -> str:
        """The lab a call is for: ``lab``, the client's default, or the gateway's only lab."""
        if lab or self._lab:
            return lab or self._lab  # type: ignore[return-value]
        labs = [item["name"] for item in self._get("/labs")]
        if len(labs) != 1:
            raise ApiError(
                0, f"say which lab (--lab); this gateway serves: {', '.join(labs) or 'none'}"
            )
        self._lab = labs[0]
        return self._lab

    def _exp(self, data: dict[str, Any]) -> Submission:
        return Submission.model_validate(data).bind(self)

    # -- who, labs, devices, plans -----------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return self._get("/whoami")

    def labs(self) -> list[dict[str, Any]]:
        """The labs the token may use, with held state, workers, queue length."""
        return self._get("/labs")

    def lab(self, lab: str | None = None) -> dict[str, Any]:
        return self._get(f"/labs/{self.lab_name(lab)}")

    def devices(self, lab: str | None = None) -> list[dict[str, Any]]:
        """The lab's devices with their live status."""
        return self._get(f"/labs/{self.lab_name(lab)}/devices")

    def samples(self, lab: str | None = None) -> list[dict[str, Any]]:
        """The lab's samples: location, holder, whether used up (and by which experiment)."""
        return self._get(f"/labs/{self.lab_name(lab)}/samples")

    def plans(self, lab: str | None = None) -> list[dict[str, Any]]:
        """The lab's plans with the JSON Schema of their parameters."""
        return self._get(f"/labs/{self.lab_name(lab)}/plans")

    def plan(self, name: str, lab: str | None = None) -> dict[str, Any]:
        return self._get(f"/labs/{self.lab_name(lab)}/plans/{name}")

    # -- experiments -------------------------------------------------------------------------
    def submit(
        self,
        plan: str,
        params: dict[str, Any] | None = None,
        *,
        priority: Priority | str = Priority.normal,
        lab: str | None = None,
    ) -> Submission:
        """Queue an experiment; :class:`PlanValidationError` names every bad parameter."""
        body = {"plan": plan, "params": params or {}, "priority": _name(priority)}
        return self._exp(self._post(f"/labs/{self.lab_name(lab)}/experiments", body))

    def experiments(
        self,
        *,
        state: list[ExperimentState | str] | None = None,
        submitter: str | None = None,
        plan: str | None = None,
        priority: Priority | str | None = None,
        limit: int = 100,
        offset: int = 0,
        lab: str | None = None,
    ) -> tuple[list[Submission], int]:
        """A page of experiments (queue order; default: the unfinished) and the total."""
        params: dict[str, Any] = {
            "submitter": submitter,
            "plan": plan,
            "priority": _name(priority) if priority else None,
            "limit": limit,
            "offset": offset,
        }
        if state:
            params["state"] = [_name(s) for s in state]
        page = self._get(f"/labs/{self.lab_name(lab)}/experiments", **params)
        return [self._exp(e) for e in page["items"]], page["total"]

    def queue(self, lab: str | None = None, **filters: Any) -> list[Submission]:
        """Every unfinished experiment in queue order (all pages)."""
        out: list[Submission] = []
        while True:
            page, total = self.experiments(lab=lab, offset=len(out), limit=1000, **filters)
            out.extend(page)
            if not page or len(out) >= total:
                return out

    def experiment(self, experiment_id: str, *, lab: str | None = None) -> Submission:
        return self._exp(self._get(f"/labs/{self.lab_name(lab)}/experiments/{experiment_id}"))

    def _act(self, lab: str | None, experiment_id: str, action: str, body: Any = None) -> Any:
        return self._post(f"/labs/{self.lab_name(lab)}/experiments/{experiment_id}/{action}", body)

    def cancel(self, experiment_id: str, *, reason: str = "", lab: str | None = None) -> Submission:
        return self._exp(self._act(lab, experiment_id, "cancel", {"reason": reason}))

    def edit(
        self, experiment_id: str, params: dict[str, Any], *, lab: str | None = None
    ) -> Submission:
        """Change the parameters of an experiment that has not started; the updated experiment.

        Given keys replace, a key given as ``None`` removes the parameter (the plan's default
        applies), the rest stay. :class:`PlanValidationError` names every bad parameter;
        :class:`ApiConflict` once it started or ended; :class:`ApiForbidden` for someone
        else's experiment unless a manager.
        """
        path = f"/labs/{self.lab_name(lab)}/experiments/{experiment_id}"
        return self._exp(self.request("PATCH", path, json={"params": params}).json())

    def move(
        self,
        experiment_id: str,
        *,
        to: str | None = None,
        behind: str | None = None,
        lab: str | None = None,
    ) -> Submission:
        """Move a queued experiment ``to`` "front" or "back", or ``behind`` another."""
        body = {k: v for k, v in (("to", to), ("behind", behind)) if v is not None}
        return self._exp(self._act(lab, experiment_id, "move", body))

    def prioritise(
        self, experiment_id: str, priority: Priority | str, *, lab: str | None = None
    ) -> Submission:
        """Give a queued experiment another priority (managers)."""
        body = {"priority": _name(priority)}
        return self._exp(self._act(lab, experiment_id, "priority", body))

    def approve(self, experiment_id: str, *, lab: str | None = None) -> Submission:
        return self._exp(self._act(lab, experiment_id, "approve"))

    def reject(self, experiment_id: str, *, reason: str = "", lab: str | None = None) -> Submission:
        return self._exp(self._act(lab, experiment_id, "reject", {"reason": reason}))

    def answer(
        self, experiment_id: str, value: bool | float | str = True, *, lab: str | None = None
    ) -> dict[str, Any]:
        """Answer the operator prompt of a running experiment."""
        return self._act(lab, experiment_id, "answer", {"value": value})

    def experiment_runs(self, experiment_id: str, *, lab: str | None = None) -> list[dict]:
        return self._get(f"/labs/{self.lab_name(lab)}/experiments/{experiment_id}/runs")

    def experiment_history(self, experiment_id: str, *, lab: str | None = None) -> dict[str, Any]:
        """What happened to an experiment: ``states`` (each with its message) and ``actions``
        (the audited requests about it: submit, edit, approve, reject, answer …)."""
        return self._get(f"/labs/{self.lab_name(lab)}/experiments/{experiment_id}/history")

    # -- the lab -----------------------------------------------------------------------------
    def _control(self, action: str, lab: str | None, body: dict | None = None) -> dict:
        return self._post(f"/labs/{self.lab_name(lab)}/{action}", body)

    def hold(self, lab: str | None = None) -> dict[str, Any]:
        return self._control("hold", lab)

    def release(self, lab: str | None = None) -> dict[str, Any]:
        return self._control("release", lab)

    def _steer(
        self, action: str, lab: str | None, experiment: str | None, body: dict | None = None
    ) -> dict[str, Any]:
        if experiment is None:
            return self._control(action, lab, body)
        return self._act(lab, experiment, action, body)

    def pause(
        self, *, immediate: bool = False, experiment: str | None = None, lab: str | None = None
    ) -> dict[str, Any]:
        """Pause ``experiment``'s plan, or the lab's running one (:class:`ApiConflict` listing
        them if several run)."""
        return self._steer("pause", lab, experiment, {"immediate": immediate})

    def resume(self, lab: str | None = None, *, experiment: str | None = None) -> dict[str, Any]:
        """Resume ``experiment``'s paused plan, or the lab's running one."""
        return self._steer("resume", lab, experiment)

    def stop(self, lab: str | None = None, *, experiment: str | None = None) -> dict[str, Any]:
        """End ``experiment``'s plan cleanly, or the lab's running one."""
        return self._steer("stop", lab, experiment)

    def abort(
        self, reason: str = "", *, experiment: str | None = None, lab: str | None = None
    ) -> dict[str, Any]:
        """Abort ``experiment``'s plan (its devices go safe), or every running plan."""
        return self._steer("abort", lab, experiment, {"reason": reason})

    def reservations(self, lab: str | None = None) -> dict[str, Any]:
        """The lab's reservations (resource → holder, since, waiters), why waiting
        experiments wait, and the running experiments."""
        return self._get(f"/labs/{self.lab_name(lab)}/reservations")

    # -- live --------------------------------------------------------------------------------
    def events(
        self,
        *,
        lab: str | None = None,
        experiment: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Live updates (Server-Sent Events) of the lab, or of one experiment until it ends."""
        params: dict[str, Any] = {}
        if experiment:
            params["experiment"] = experiment
        if timeout:
            params["timeout"] = timeout
        path = f"/labs/{self.lab_name(lab)}/events"
        with self._http.stream(
            "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
        ) as response:
            if not response.is_success:
                response.read()
                self._raise(response)
            kind, data = "message", []
            for line in _lines(response):
                if line.startswith(":"):
                    continue
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield Event(kind, json.loads("\n".join(data)))
                    if kind in ("end", "timeout"):
                        return
                    kind, data = "message", []

    # -- runs --------------------------------------------------------------------------------
    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored runs, newest first (filters: lab, experiment, plan, submitter, sample,
        complete, limit, offset)."""
        return self._get("/runs", **filters)

    def run(self, uid: str) -> dict[str, Any]:
        """A run's metadata with its start and stop documents."""
        return self._get(f"/runs/{uid}")

    def run_data(
        self, uid: str, format: str = "json", *, stream: str = "primary", key: str | None = None
    ) -> Any:
        """A run's data: a dict for JSON, CSV text, or HDF5 bytes."""
        params = {"format": format, "stream": stream, "key": key}
        response = self.request(
            "GET", f"/runs/{uid}/data", params={k: v for k, v in params.items() if v}
        )
        if format == "json":
            return response.json()
        return response.text if format == "csv" else response.content

    def export(
        self, uid: str, format: str = "csv", out_dir: str | Path = ".", *, stream: str = "primary"
    ) -> Path:
        """Download a run's data into ``out_dir``; the main file written (see
        :meth:`export_files`)."""
        return self.export_files(uid, format, out_dir, stream=stream)[0]

    def export_files(
        self, uid: str, format: str = "csv", out_dir: str | Path = ".", *, stream: str = "primary"
    ) -> list[Path]:
        """Download a run's data into ``out_dir`` as ``remotelab export`` writes it on the lab
        machine (the same files and names): csv or json of one ``stream`` (csv: the scalar
        signals, then a CSV of each array signal such as a spectrum), or hdf5; the files."""
        params = {"format": format, "stream": stream}
        response = self.request("GET", f"/runs/{uid}/data", params=params)
        paths = [self._save(response, Path(out_dir), f"run-{uid[:8]}.{stream}.{format}")]
        arrays = response.headers.get("x-remotelab-arrays", "") if format == "csv" else ""
        for key in filter(None, arrays.split(",")):
            response = self.request("GET", f"/runs/{uid}/data", params={**params, "key": key})
            paths.append(self._save(response, Path(out_dir), f"run-{uid[:8]}.{stream}.{key}.csv"))
        return paths

    @staticmethod
    def _save(response: httpx.Response, out_dir: Path, default: str) -> Path:
        """Write a downloaded file into ``out_dir`` under the name the gateway gave it."""
        disposition = response.headers.get("content-disposition", "")
        name = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else ""
        path = out_dir / Path(name or default).name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(response.content)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def plot(self, uid: str, *, redraw: bool = False) -> bytes:
        """The run's summary plot (PNG bytes; ``redraw``: drawn anew)."""
        params = {"redraw": "true"} if redraw else {}
        return self.request("GET", f"/runs/{uid}/plot.png", params=params).content

    def verify(self, uid: str) -> dict[str, Any]:
        """The run checked against the content hash recorded when it ended (``ok``,
        ``expected``, ``actual``, ``detail``)."""
        return self._get(f"/runs/{uid}/verify")

    # -- notifications ------------------------------------------------------------------------
    def subscriptions(self, lab: str | None = None) -> list[dict[str, Any]]:
        """Your notification subscriptions (a manager: all of the lab's), URLs masked."""
        return self._get(f"/labs/{self.lab_name(lab)}/notify")

    def subscribe(
        self, url: str, events: list[str] | None = None, *, lab: str | None = None
    ) -> dict[str, Any]:
        """Subscribe to the lab's notifications through an apprise ``url`` (``events``:
        the kinds wanted; none: all); :class:`ApiInvalid` if apprise cannot use the URL."""
        body = {"url": url, "events": list(events or [])}
        return self._post(f"/labs/{self.lab_name(lab)}/notify", body)

    def unsubscribe(self, subscription_id: str, *, lab: str | None = None) -> dict[str, Any]:
        return self.request("DELETE", f"/labs/{self.lab_name(lab)}/notify/{subscription_id}").json()

    def notify_test(
        self, subscription_id: str | None = None, *, lab: str | None = None
    ) -> list[dict[str, Any]]:
        """Send a test notification now (to one subscription, or all yours); how each went."""
        return self._post(f"/labs/{self.lab_name(lab)}/notify/test", {"id": subscription_id})

    # -- audit, users, tokens ----------------------------------------------------------------
    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit entries, newest first (filters: ``lab``, ``actor``, ``action``, ``since``,
        ``limit``, ``offset``); managers."""
        return self._get("/audit", **filters)

    def audit_head(self) -> dict[str, Any]:
        """``{"head": …}``: the hash of the audit log's newest row."""
        return self._get("/audit/head")

    def verify_audit(self, head: str | None = None) -> dict[str, Any]:
        """Walk the audit log's hash chain (``ok``, ``first_bad``, ``problem``, ``head``);
        ``head``: also check that a head recorded earlier is still in the chain."""
        return self._get("/audit/verify", head=head)

    def users(self) -> list[dict[str, Any]]:
        return self._get("/users")

    def add_user(self, name: str, role: str, labs: list[str] | None = None) -> dict[str, Any]:
        return self._post("/users", {"name": name, "role": role, "labs": labs or []})

    def update_user(
        self, name: str, *, role: str | None = None, disabled: bool | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("role", role), ("disabled", disabled)) if v is not None}
        return self.request("PATCH", f"/users/{name}", json=body).json()

    def tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        return self._get("/tokens", user=user)

    def create_token(self, user: str, description: str = "") -> dict[str, Any]:
        """A new token for ``user`` (its secret is in ``["token"]``, shown this once)."""
        return self._post(f"/users/{user}/tokens", {"description": description})

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/tokens/{token_id}").json()


__all__ = ["Client", "Event", "Submission"]
