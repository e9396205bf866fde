"""A flow's definition: its steps and conditions as data, validated at the door.

``parse_flow`` is the one way a definition is read, from a request body or from a stored
version. It answers a ``FlowDefinition`` or raises ``FlowInvalid`` naming the failing
step by its path (``steps[2].then[0].template``), so a client sees where, not only what.
Beyond the shape of each step it checks what no single step can: ids unique across
nested steps, a ``wait`` naming an earlier ``send``, conditions naming earlier steps,
and the limits (steps, nesting) that keep a run's history small.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from herald.contracts import CategoryName, Channel, Locale, TemplateKey, Text, has_nul

MAX_STEPS: Final = 50  # every step, nested ones included
MAX_DEPTH: Final = 5  # a top-level step is at depth 1; a branch's steps one deeper
MAX_CONDITIONS: Final = 50  # leaves and combinators of one branch's condition
MAX_SECONDS: Final = 365 * 24 * 3600  # the longest delay, wait or window

StepId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# ``data.<field>``: a field of the trigger's data (dots reach into nested objects).
DataPath = Annotated[
    str, Field(min_length=6, max_length=200, pattern=r"^data\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
]
ConditionPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=(
            r"^(data\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*"
            r"|recipient\.(id|email|phone|locale|timezone)"
            r"|steps\.[A-Za-z0-9_-]+\.(status|outcome))$"
        ),
    ),
]
Seconds = Annotated[int, Field(ge=1, le=MAX_SECONDS)]

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)


# --- conditions ----------------------------------------------------------------------


class Compare(BaseModel):
    """``{"path", "op", "value"?}``: one comparison of a value the run knows."""

    model_config = _STRICT

    path: ConditionPath
    op: Literal["eq", "ne", "in", "exists", "gt", "lt"]
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Compare:
        if has_nul(self.value):
            raise ValueError("value may not contain the NUL character (\\u0000)")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value")
        if self.op in ("gt", "lt") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"op {self.op!r} needs a number or a string value")
        return self


class AllOf(BaseModel):
    """``{"all": [...]}``: every condition holds."""

    model_config = _STRICT

    all: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class AnyOf(BaseModel):
    """``{"any": [...]}``: at least one condition holds."""

    model_config = _STRICT

    any: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class NotOf(BaseModel):
    """``{"not": ...}``: the condition does not hold."""

    model_config = _STRICT

    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {Compare: "?compare", AllOf: "?all", AnyOf: "?any", NotOf: "?not"}.get(type(value))
    if not isinstance(value, dict):
        return None
    for key in ("all", "any", "not"):
        if key in value:
            return f"?{key}"
    return "?compare" if "path" in value or "op" in value else None


# Tags start with ``?`` so that ``flow_path`` can tell them from field names.
Condition = Annotated[
    Annotated[Compare, Tag("?compare")]
    | Annotated[AllOf, Tag("?all")]
    | Annotated[AnyOf, Tag("?any")]
    | Annotated[NotOf, Tag("?not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message='a condition is {"path", "op", "value"?}, {"all": [...]}, '
        '{"any": [...]} or {"not": ...}',
    ),
]


# --- steps ---------------------------------------------------------------------------


class SendStep(BaseModel):
    """Send one notification: an ordinary ``NotificationWorkflow``, started as a child."""

    model_config = _STRICT

    id: StepId
    type: Literal["send"]
    channel: Channel
    template: TemplateKey
    locale: Locale | None = None
    fallback: list[Channel] = Field(default_factory=list, max_length=2)
    confirm_within_seconds: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _fallback_is_other_channels(self) -> SendStep:
        if self.channel in self.fallback or len(set(self.fallback)) != len(self.fallback):
            raise ValueError("fallback must name other channels than 'channel', each once")
        if self.confirm_within_seconds is not None and not self.fallback:
            raise ValueError("confirm_within_seconds needs a fallback")
        return self


class DelayStep(BaseModel):
    """Wait ``seconds``, or until the time in a field of the trigger's data."""

    model_config = _STRICT

    id: StepId
    type: Literal["delay"]
    seconds: Seconds | None = None
    until: DataPath | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DelayStep:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a delay takes exactly one of 'seconds' and 'until'")
        return self


class WaitStep(BaseModel):
    """Wait until an earlier send's notification is delivered (or read), or time out."""

    model_config = _STRICT

    id: StepId
    type: Literal["wait"]
    step: StepId
    for_: Literal["delivered", "read"] = Field(alias="for")
    timeout_seconds: Seconds


class BranchStep(BaseModel):
    """Run ``then`` if the condition holds, else ``else``; then go on after the branch."""

    model_config = _STRICT

    id: StepId
    type: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    else_: list[Step] = Field(default_factory=list, alias="else", max_length=MAX_STEPS)


class DigestStep(BaseModel):
    """Triggers of one recipient, flow and key within the window continue as one run."""

    model_config = _STRICT

    id: StepId
    type: Literal["digest"]
    window_seconds: Seconds
    key: DataPath | None = None
    max_items: int | None = Field(default=None, ge=1, le=1000)


class ThrottleStep(BaseModel):
    """Beyond ``limit`` runs per recipient (and key) in the window, the run ends."""

    model_config = _STRICT

    id: StepId
    type: Literal["throttle"]
    limit: int = Field(ge=1, le=1_000_000)
    window_seconds: Seconds
    key: DataPath | None = None


STEP_TYPES: Final = ("send", "delay", "wait", "branch", "digest", "throttle")


def _step_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"?{kind}" if kind in STEP_TYPES else None


Step = Annotated[
    Annotated[SendStep, Tag("?send")]
    | Annotated[DelayStep, Tag("?delay")]
    | Annotated[WaitStep, Tag("?wait")]
    | Annotated[BranchStep, Tag("?branch")]
    | Annotated[DigestStep, Tag("?digest")]
    | Annotated[ThrottleStep, Tag("?throttle")],
    Discriminator(
        _step_kind,
        custom_error_type="step_type",
        custom_error_message="'type' must be one of " + ", ".join(STEP_TYPES),
    ),
]

AnyStep = SendStep | DelayStep | WaitStep | BranchStep | DigestStep | ThrottleStep


class FlowDefinition(BaseModel):
    """``PUT /v1/flows/{key}``: a name, a category, and the steps in order."""

    model_config = _STRICT

    name: Text | None = Field(default=None, max_length=256)
    category: CategoryName | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("name may not be blank")
        return value

    def stored(self) -> list[dict[str, Any]]:
        """The steps as stored (and as a run's input): JSON with the contract's names."""
        return [
            step.model_dump(mode="json", by_alias=True, exclude_none=True) for step in self.steps
        ]

    def walk(self) -> Iterator[tuple[str, int, AnyStep]]:
        """Every step in the order a run may reach it: (path, depth, step)."""
        yield from _walk(self.steps, "steps", 1)

    def sends(self) -> list[tuple[str, SendStep]]:
        """Every send step with its path."""
        return [(path, step) for path, _, step in self.walk() if isinstance(step, SendStep)]


for _model in (AllOf, AnyOf, NotOf, BranchStep, FlowDefinition):
    _model.model_rebuild()


def _walk(steps: list[AnyStep], prefix: str, depth: int) -> Iterator[tuple[str, int, AnyStep]]:
    for index, step in enumerate(steps):
        path = f"{prefix}[{index}]"
        yield path, depth, step
        if isinstance(step, BranchStep):
            yield from _walk(step.then, f"{path}.then", depth + 1)
            yield from _walk(step.else_, f"{path}.else", depth + 1)


# --- reading and checking ------------------------------------------------------------


@dataclass(frozen=True)
class FlowInvalid(Exception):
    """Why a definition cannot be used; ``path`` names the field (``steps[0].template``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def flow_path(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as a step path: ``("steps", 2, "?branch", "then", 0,
    "?send", "template")`` → ``steps[2].then[0].template``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("?"):
            continue  # a union's tag, not a field
        else:
            path += f".{part}" if path else part
    return path or "body"


def parse_flow(payload: Any) -> FlowDefinition:
    """The definition in ``payload``, checked whole; ``FlowInvalid`` on the first problem."""
    try:
        flow = FlowDefinition.model_validate(payload)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        path = flow_path(tuple(first["loc"]))
        if first["type"] == "step_type":
            path += ".type"
        message = first["msg"].removeprefix("Value error, ")
        raise FlowInvalid(path, message) from None
    check_flow(flow)
    return flow


def check_flow(flow: FlowDefinition) -> None:
    """What no single step can check: limits, unique ids, references to earlier steps."""
    seen: dict[str, AnyStep] = {}
    for count, (path, depth, step) in enumerate(flow.walk(), start=1):
        if count > MAX_STEPS:
            raise FlowInvalid(path, f"a flow has at most {MAX_STEPS} steps, nested ones included")
        if depth > MAX_DEPTH:
            raise FlowInvalid(path, f"branches nest at most {MAX_DEPTH} steps deep")
        if step.id in seen:
            raise FlowInvalid(f"{path}.id", f"step id {step.id!r} is used twice")
        if isinstance(step, WaitStep) and not isinstance(seen.get(step.step), SendStep):
            raise FlowInvalid(f"{path}.step", f"{step.step!r} is not an earlier send step")
        if isinstance(step, BranchStep):
            _check_condition(step.if_, f"{path}.if", seen, [0])
        if isinstance(step, DigestStep) and any(
            isinstance(earlier, DigestStep) for earlier in seen.values()
        ):
            raise FlowInvalid(f"{path}.type", "a flow has at most one digest step")
        seen[step.id] = step


def _check_condition(
    condition: Compare | AllOf | AnyOf | NotOf,
    path: str,
    earlier: dict[str, AnyStep],
    size: list[int],
    depth: int = 1,
) -> None:
    size[0] += 1
    if size[0] > MAX_CONDITIONS:
        raise FlowInvalid(path, f"a condition has at most {MAX_CONDITIONS} parts")
    if depth > MAX_DEPTH:
        raise FlowInvalid(path, f"conditions nest at most {MAX_DEPTH} deep")
    match condition:
        case Compare(path=target) if target.startswith("steps."):
            step_id = target.split(".")[1]
            if step_id not in earlier:
                raise FlowInvalid(f"{path}.path", f"{step_id!r} is not an earlier step")
        case AllOf(all=parts) | AnyOf(any=parts):
            key = "all" if isinstance(condition, AllOf) else "any"
            for index, part in enumerate(parts):
                _check_condition(part, f"{path}.{key}[{index}]", earlier, size, depth + 1)
        case NotOf(not_=part):
            _check_condition(part, f"{path}.not", earlier, size, depth + 1)
