"""The plan registry: the only way a plan name and a JSON body from outside become a run.

A plan is a bluesky plan function decorated with :func:`plan`, which names it and
gives it a pydantic parameter model (see :mod:`remotelab.plans.params`). A
:class:`PlanRegistry` holds plan definitions and the lab's role rules; it gives
each plan's JSON Schema, validates a submission against the schema *and* the lab
(devices exist and are of the right kind, samples, wells and locations are known,
plan-specific checks such as device soft limits), and builds the bluesky plan with
provenance merged into its start document.

``registry_for(lab)`` is the registry of one lab: the built-in plans, the plans of
the lab file's ``plans.modules``, and its ``plans.roles`` rules.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bluesky.preprocessors import msg_mutator
from pydantic import BaseModel, Field, ValidationError

from remotelab.errors import (
    LabFileError,
    PlanNotAllowedError,
    PlanValidationError,
    UnknownRoleError,
)
from remotelab.plans.params import PlanParams
from remotelab.plans.provenance import provenance
from remotelab.plans.references import check_references, marker_of, pydantic_errors
from remotelab.plans.uses import Uses, devices_used

if TYPE_CHECKING:
    from remotelab.lab import Lab

#: modules whose plans every lab offers
BUILTIN_MODULES: tuple[str, ...] = (
    "remotelab.plans.basic",
    "remotelab.plans.samples",
    "remotelab.plans.titration",
    "remotelab.plans.optimize",
)
#: in ``plans.roles``, this entry allows every plan
ALL_PLANS = "*"
#: the roles, from least to most privileged
ROLES: tuple[str, ...] = ("observer", "researcher", "manager", "admin")
#: the role that may run no plan, whatever the lab file says
OBSERVER = "observer"
#: roles that may run every plan unless the lab's rules name them
PRIVILEGED_ROLES: tuple[str, ...] = ("manager", "admin")


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`; else raise :class:`UnknownRoleError`."""
    if role not in ROLES:
        raise UnknownRoleError(role, ROLES)
    return role


Check = Callable[[Any, "Lab"], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class PlanDefinition:
    """A registered plan: its name, function, parameter model and lab-aware checks."""

    name: str
    func: Callable[..., Generator]
    params: type[PlanParams]
    description: str
    check: Check | None = None
    example: dict[str, Any] = field(default_factory=dict)
    module: str = ""
    uses: Uses = ()
    #: the parameter naming the sample a run uses up (refused once used up), if any
    consumes: str | None = None

    def schema(self) -> dict[str, Any]:
        schema = self.params.model_json_schema()
        schema["title"] = self.name
        schema["description"] = self.description
        return schema


def plan(
    name: str | None = None,
    *,
    params: type[PlanParams],
    description: str | None = None,
    check: Check | None = None,
    example: Mapping[str, Any] | None = None,
    uses: Uses = (),
    consumes: str | None = None,
) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    """Declare a bluesky plan function as a registrable plan.

    ``params`` is its parameter model; the plan function is called with the
    validated parameters as keyword arguments, device names replaced by the lab's
    devices (and ``lab=`` if the function takes it). ``check(params, lab)`` yields
    ``(param, message)`` for lab-specific problems. ``example`` is a parameter set
    that runs on the shipped simulated lab. ``uses`` names the devices it drives whatever
    its parameters say: parameter names (their values) or device names of the lab, or
    ``uses(params, lab)`` giving them. ``consumes`` names the parameter whose sample a run
    uses up: a sample the lab records as used up is refused. The function itself is returned
    unchanged, so it stays an ordinary bluesky plan.
    """

    def decorate(func: Callable[..., Generator]) -> Callable[..., Generator]:
        doc = inspect.getdoc(func) or ""
        definition = PlanDefinition(
            name=name or func.__name__,
            func=func,
            params=params,
            description=description or doc.split("\n\n")[0].replace("\n", " "),
            check=check,
            example=dict(example or {}),
            module=func.__module__,
            uses=uses,
            consumes=consumes,
        )
        func.__remotelab_plan__ = definition  # type: ignore[attr-defined]
        return func

    return decorate


def used_up(param: str, sample: Any, lab: Lab) -> list[dict[str, Any]]:
    """The error of a plan that uses up its sample given one the lab records as used up."""
    why = lab.tracker.consumed.get(sample) if isinstance(sample, str) else None
    if why is None:
        return []
    return [{"param": param, "message": f"sample {sample!r} is used up: {why}; use a fresh one"}]


def plans_in_module(module: ModuleType) -> list[PlanDefinition]:
    """The plans a module defines (not those it merely imports)."""
    found = []
    for value in vars(module).values():
        definition = getattr(value, "__remotelab_plan__", None)
        if isinstance(definition, PlanDefinition) and definition.module == module.__name__:
            found.append(definition)
    return found


class ValidatedPlan(BaseModel):
    """A submission the registry accepted: ready to be queued and built."""

    name: str = Field(description="registered plan name")
    params: dict[str, Any] = Field(description="validated parameters, defaults filled, JSON-ready")
    submitted: dict[str, Any] = Field(
        default_factory=dict, description="the parameters as submitted"
    )
    sample_ids: list[str] = Field(default_factory=list, description="samples the plan touches")
    devices: list[str] = Field(default_factory=list, description="devices the plan drives")
    reserved: list[str] = Field(
        default_factory=list,
        description="what is reserved for its whole run: its devices but the shared ones, "
        "and its samples (as sample:<id>)",
    )
    shared: list[str] = Field(
        default_factory=list, description="shared devices it drives, held for blocks of steps"
    )


class PlanRegistry:
    """Plan definitions by name, and which plans each role may run.

    Roles are :data:`ROLES` (observer < researcher < manager < admin). An observer may run
    no plan. With no ``roles`` rules, every other role may run every plan. Once rules are
    given, a role they do not name may run nothing, except that manager and admin may run
    every plan unless the rules name them too.
    """

    def __init__(
        self,
        definitions: Iterable[PlanDefinition] = (),
        *,
        roles: Mapping[str, Iterable[str]] | None = None,
    ):
        self._plans: dict[str, PlanDefinition] = {}
        for definition in definitions:
            self.register(definition)
        self.roles: dict[str, list[str]] = {}
        for role, names in (roles or {}).items():
            self.roles[check_role(role)] = list(names)

    # -- registration ------------------------------------------------------------------------
    def register(self, item: PlanDefinition | Callable[..., Generator]) -> PlanDefinition:
        """Add a plan (a definition or a function decorated with :func:`plan`)."""
        definition = (
            item if isinstance(item, PlanDefinition) else getattr(item, "__remotelab_plan__", None)
        )
        if not isinstance(definition, PlanDefinition):
            raise TypeError(f"{item!r} is not a plan; decorate it with remotelab.plans.plan")
        known = self._plans.get(definition.name)
        if known is not None and known.func is not definition.func:
            raise LabFileError(
                f"plan {definition.name!r} from {definition.module} clashes with the plan of "
                f"that name from {known.module}"
            )
        self._plans[definition.name] = definition
        return definition

    def add_module(self, module_name: str) -> list[PlanDefinition]:
        """Import ``module_name`` and register the plans it defines."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LabFileError(f"plans.modules: cannot import {module_name!r}: {exc}") from None
        definitions = plans_in_module(module)
        if not definitions:
            raise LabFileError(f"plans.modules: {module_name!r} defines no plans")
        return [self.register(d) for d in definitions]

    # -- listing -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._plans)

    def definition(self, name: str) -> PlanDefinition:
        if name not in self._plans:
            raise PlanValidationError(
                name,
                [
                    {
                        "param": "plan",
                        "message": f"unknown plan {name!r}; known: {', '.join(self.names())}",
                    }
                ],
            )
        return self._plans[name]

    def schema(self, name: str) -> dict:
        """The JSON Schema of a plan's parameters."""
        return self.definition(name).schema()

    def describe(self) -> list[dict]:
        """Every plan: name, description, JSON Schema and an example parameter set."""
        return [
            {
                "name": d.name,
                "description": d.description,
                "schema": d.schema(),
                "example": d.example,
                "module": d.module,
            }
            for d in (self._plans[n] for n in self.names())
        ]

    def allowed(self, role: str) -> list[str]:
        """The plans ``role`` may run; :class:`UnknownRoleError` if it is not a role."""
        check_role(role)
        if role == OBSERVER:
            return []
        if role not in self.roles:
            if not self.roles or role in PRIVILEGED_ROLES:
                return self.names()
            return []
        rule = self.roles[role]
        if ALL_PLANS in rule:
            return self.names()
        return [n for n in self.names() if n in rule]

    # -- validation --------------------------------------------------------------------------
    def validate(
        self, name: str, params: dict | None, *, lab: Lab, role: str = "manager"
    ) -> ValidatedPlan:
        """Check a submission; return it validated or raise naming every problem.

        Raises :class:`PlanValidationError` (unknown plan, bad parameters, unknown or
        wrong-kind devices, unknown samples…), :class:`PlanNotAllowedError` or
        :class:`UnknownRoleError`.
        """
        allowed = self.allowed(role)
        definition = self.definition(name)
        if name not in allowed:
            raise PlanNotAllowedError(name, role, allowed)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise PlanValidationError(
                name,
                [{"param": None, "message": f"parameters must be an object, not {params!r}"}],
            )
        submitted = dict(params)
        model_cls = definition.params
        errors: list[dict[str, Any]] = []
        try:
            model = model_cls.model_validate(submitted)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, model_cls))
            model = None
        bad = {e["param"].split(".")[0] for e in errors if e.get("param")}
        values = model.model_dump() if model is not None else submitted
        filled, ref_errors, devices, samples = check_references(model_cls, values, lab, skip=bad)
        errors.extend(ref_errors)
        if model is not None and filled:
            model = model_cls.model_validate({**model.model_dump(), **filled})
        if model is not None and not errors and definition.check is not None:
            errors.extend({"param": p, "message": m} for p, m in definition.check(model, lab))
        if model is not None and definition.consumes:
            errors.extend(used_up(definition.consumes, getattr(model, definition.consumes), lab))
        if errors:
            raise PlanValidationError(name, errors)
        assert model is not None
        used = devices_used(definition.name, definition.uses, model, lab)
        devices = [*devices, *(d for d in used if d not in devices)]
        shared = [d for d in devices if d in lab.shared_devices]
        return ValidatedPlan(
            name=name,
            params=model.model_dump(mode="json"),
            submitted=submitted,
            sample_ids=samples,
            devices=devices,
            reserved=[d for d in devices if d not in shared] + [f"sample:{s}" for s in samples],
            shared=shared,
        )

    # -- building ----------------------------------------------------------------------------
    def build(self, validated: ValidatedPlan, lab: Lab, *, md: dict | None = None) -> Generator:
        """The bluesky plan of a validated submission, with provenance in its start document.

        ``md`` may supply ``experiment_id`` and ``submitter`` (the queue does); any
        other keys are added to the start document too. Nothing touches a device
        inside the returned generator beyond the messages it yields.
        """
        definition = self.definition(validated.name)
        model = definition.params.model_validate(validated.params)
        kwargs: dict[str, Any] = {}
        used = []
        for pname, info in definition.params.model_fields.items():
            value = getattr(model, pname)
            if marker_of(info).get("device_kind") and value is not None:
                if isinstance(value, list | tuple):
                    value = [lab[n] for n in value]
                    used.extend(value)
                else:
                    value = lab[value]
                    used.append(value)
            kwargs[pname] = value
        if "lab" in inspect.signature(definition.func).parameters:
            kwargs["lab"] = lab
        start_md = provenance(validated, lab, used, md or {})
        inner = definition.func(**kwargs)

        def inject(msg):
            if msg.command == "open_run":
                return msg._replace(kwargs={**msg.kwargs, **start_md})
            return msg

        return msg_mutator(inner, inject)


def builtin_plans() -> list[PlanDefinition]:
    """The plans every lab offers."""
    found: list[PlanDefinition] = []
    for name in BUILTIN_MODULES:
        found.extend(plans_in_module(importlib.import_module(name)))
    return found


def registry_for(lab: Lab) -> PlanRegistry:
    """The registry of ``lab``: built-in plans, its ``plans.modules``, its ``plans.roles``."""
    spec = lab.spec.plans
    registry = PlanRegistry(builtin_plans())
    for module in spec.modules:
        registry.add_module(module)
    for role, names in spec.roles.items():
        if role not in ROLES:
            raise LabFileError(
                f"plans.roles: unknown role {role!r}; the roles are: {', '.join(ROLES)}"
            )
        if role == OBSERVER and names:
            raise LabFileError(
                f"plans.roles.{role}: an observer may run no plan; remove its rule or make it []"
            )
        unknown = [n for n in names if n != ALL_PLANS and n not in registry.names()]
        if unknown:
            raise LabFileError(
                f"plans.roles.{role}: unknown plan(s) {', '.join(unknown)}; "
                f"plans: {', '.join(registry.names())}"
            )
    registry.roles = {r: list(n) for r, n in spec.roles.items()}
    return registry


__all__ = [
    "BUILTIN_MODULES",
    "ROLES",
    "PlanDefinition",
    "PlanRegistry",
    "ValidatedPlan",
    "builtin_plans",
    "check_role",
    "plan",
    "plans_in_module",
    "registry_for",
]
