"""Flow definitions: what ``PUT /v1/flows/{key}`` accepts, and the step path its 422 names."""

from __future__ import annotations

from typing import Any

import pytest

from herald.flows.definition import (
    MAX_DEPTH,
    MAX_STEPS,
    BranchStep,
    FlowInvalid,
    SendStep,
    WaitStep,
    flow_path,
    parse_flow,
)
from herald.flows.models import condition_paths, holds

pytestmark = pytest.mark.fast


def send(step_id: str, channel: str = "email", template: str = "welcome") -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": channel, "template": template}


def delay(step_id: str, seconds: int = 60) -> dict[str, Any]:
    return {"id": step_id, "type": "delay", "seconds": seconds}


ONBOARDING: dict[str, Any] = {
    "name": "Onboarding",
    "category": "onboarding",
    "steps": [
        send("push-1", "push"),
        {
            "id": "wait-1",
            "type": "wait",
            "step": "push-1",
            "for": "delivered",
            "timeout_seconds": 60,
        },
        {
            "id": "missed",
            "type": "branch",
            "if": {"path": "steps.wait-1.outcome", "op": "eq", "value": "timeout"},
            "then": [send("email-1")],
        },
        {
            "id": "plan",
            "type": "branch",
            "if": {"not": {"path": "data.plan", "op": "eq", "value": "pro"}},
            "then": [send("sms-1", "sms")],
        },
        {"id": "later", "type": "delay", "until": "data.trial_ends_at"},
        {"id": "limit", "type": "throttle", "limit": 3, "window_seconds": 60, "key": "data.topic"},
        {"id": "batch", "type": "digest", "window_seconds": 10, "max_items": 50},
    ],
}


def invalid(payload: Any) -> FlowInvalid:
    with pytest.raises(FlowInvalid) as caught:
        parse_flow(payload)
    return caught.value


def test_every_step_type_is_read_and_stored_with_the_contract_names() -> None:
    flow = parse_flow(ONBOARDING)
    kinds = [step.type for _, _, step in flow.walk()]
    assert kinds == [
        "send", "wait", "branch", "send", "branch", "send", "delay", "throttle", "digest"
    ]  # fmt: skip
    stored = flow.stored()
    assert stored[1]["for"] == "delivered"
    assert stored[2]["if"] == {"path": "steps.wait-1.outcome", "op": "eq", "value": "timeout"}
    assert stored[3]["if"] == {"not": {"path": "data.plan", "op": "eq", "value": "pro"}}
    # What is stored reads back as the same definition (a run interprets the stored one).
    again = parse_flow({"steps": stored})
    assert again.stored() == stored
    assert [path for path, _ in flow.sends()] == [
        "steps[0]",
        "steps[2].then[0]",
        "steps[3].then[0]",
    ]
    assert isinstance(flow.steps[1], WaitStep)
    assert isinstance(flow.steps[2], BranchStep)
    assert isinstance(flow.steps[2].then[0], SendStep)


@pytest.mark.parametrize(
    ("steps", "path", "says"),
    [
        ([send("a"), {"id": "b", "type": "branch",
          "if": {"path": "data.x", "op": "exists"}, "then": [send("c"), {"id": "d", "type": "send",
          "channel": "email"}]}], "steps[1].then[1].template", "required"),
        ([{"id": "b", "type": "branch", "if": {"path": "data.x", "op": "exists"},
           "then": [send("c", template="no spaces")]}], "steps[0].then[0].template", "pattern"),
        ([{"id": "a", "type": "teleport"}], "steps[0].type", "must be one of"),
        ([{"id": "a"}], "steps[0].type", "must be one of"),
        ([{"id": "b", "type": "branch", "if": {"all": [{"path": "data.x", "op": "like"}]},
           "then": [delay("c")]}], "steps[0].if.all[0].op", "'eq'"),
        ([{"id": "b", "type": "branch", "if": {"what": 1}, "then": [delay("c")]}],
         "steps[0].if", "a condition is"),
        ([{"id": "b", "type": "branch", "if": {"path": "secrets.x", "op": "exists"},
           "then": [delay("c")]}], "steps[0].if.path", "pattern"),
        ([{"id": "b", "type": "branch", "if": {"path": "data.x", "op": "in", "value": 3},
           "then": [delay("c")]}], "steps[0].if", "needs a list"),
        ([{"id": "a", "type": "delay"}], "steps[0]", "exactly one of"),
        ([{"id": "a", "type": "delay", "seconds": 5, "until": "data.at"}], "steps[0]", "exactly"),
        ([{"id": "a", "type": "delay", "until": "user.when"}], "steps[0].until", "pattern"),
        ([{"id": "a", "type": "delay", "seconds": 0}], "steps[0].seconds", "greater than"),
        ([{"id": "a", "type": "digest", "window_seconds": 5, "key": "plan"}], "steps[0].key", ""),
        ([{"id": "a", "type": "throttle", "limit": 0, "window_seconds": 5}], "steps[0].limit", ""),
        ([send("a"), {"id": "a", "type": "delay", "seconds": 1}], "steps[1].id", "used twice"),
        ([send("a"), {"id": "b", "type": "branch", "if": {"path": "data.x", "op": "exists"},
          "then": [send("a")]}], "steps[1].then[0].id", "used twice"),
        ([{"id": "w", "type": "wait", "step": "a", "for": "delivered", "timeout_seconds": 5},
          send("a")], "steps[0].step", "earlier send"),
        ([delay("a"), {"id": "w", "type": "wait", "step": "a", "for": "read",
          "timeout_seconds": 5}], "steps[1].step", "earlier send"),
        ([send("a"), {"id": "w", "type": "wait", "step": "a", "for": "opened",
          "timeout_seconds": 5}], "steps[1].for", "'delivered'"),
        ([{"id": "b", "type": "branch", "if": {"path": "steps.later.status", "op": "exists"},
           "then": [delay("c")]}, delay("later")], "steps[0].if.path", "earlier step"),
        ([{**send("a"), "fallback": ["email"]}], "steps[0]", "other channels"),
        ([{**send("a"), "surprise": 1}], "steps[0].surprise", "not permitted"),
        ([{**send("a"), "id": "has space"}], "steps[0].id", "pattern"),
        ([{**send("a"), "template": "t\x00"}], "steps[0].template", ""),
        ([{"id": "b", "type": "branch", "if": {"path": "data.x", "op": "eq", "value": "\x00"},
           "then": [delay("c")]}], "steps[0].if", "NUL"),
    ],
)  # fmt: skip
def test_a_422_names_the_failing_step_path(steps: list[Any], path: str, says: str) -> None:
    problem = invalid({"steps": steps})
    assert problem.path == path, problem
    assert says in problem.message


def test_text_fields_refuse_nul_and_blank() -> None:
    assert invalid({"name": "on\x00board", "steps": [delay("a")]}).path == "name"
    assert invalid({"name": "  ", "steps": [delay("a")]}).path == "name"
    assert invalid({"category": "Not A Category", "steps": [delay("a")]}).path == "category"
    assert invalid({"steps": []}).path == "steps"
    assert invalid({"steps": [delay("a")], "owner": "x"}).path == "owner"
    assert invalid(["not", "an", "object"]).path == "body"


def test_limits_on_steps_and_nesting() -> None:
    many = [delay(f"d{i}") for i in range(MAX_STEPS)]
    parse_flow({"steps": many})
    assert invalid({"steps": [*many, delay("one-more")]}).path == "steps"

    # Nested steps count too.
    nested = [
        delay(f"d{i}") for i in range(MAX_STEPS - 2)
    ] + [{"id": "b", "type": "branch", "if": {"path": "data.x", "op": "exists"},
          "then": [delay("x"), delay("y")]}]  # fmt: skip
    problem = invalid({"steps": nested})
    assert problem.path == "steps[48].then[1]" and "at most" in problem.message

    def nest(depth: int) -> dict[str, Any]:
        inner: list[Any] = [delay("leaf")]
        for level in range(depth - 1):
            inner = [
                {
                    "id": f"b{level}",
                    "type": "branch",
                    "if": {"path": "data.x", "op": "exists"},
                    "then": inner,
                }
            ]
        return {"steps": inner}

    parse_flow(nest(MAX_DEPTH))
    problem = invalid(nest(MAX_DEPTH + 1))
    assert "deep" in problem.message
    assert problem.path.count(".then") == MAX_DEPTH

    condition: dict[str, Any] = {"path": "data.x", "op": "exists"}
    for _ in range(MAX_DEPTH + 1):
        condition = {"not": condition}
    problem = invalid(
        {"steps": [{"id": "b", "type": "branch", "if": condition, "then": [delay("c")]}]}
    )
    assert problem.path.startswith("steps[0].if.not") and "deep" in problem.message


def test_tags_of_unions_never_show_in_a_path() -> None:
    assert flow_path(("steps", 2, "?branch", "then", 0, "?send", "template")) == (
        "steps[2].then[0].template"
    )
    assert flow_path(("steps", 0, "?branch", "if", "?all", "all", 1, "?compare", "op")) == (
        "steps[0].if.all[1].op"
    )
    assert flow_path(()) == "body"


FACTS = {
    "data": {"plan": "pro", "seats": 5, "nested": {"flag": True}},
    "recipient": {"phone": None, "email": "ada@example.com"},
    "steps": {"wait": {"status": "completed", "outcome": "timeout"}},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"path": "data.plan", "op": "eq", "value": "pro"}, True),
        ({"path": "data.plan", "op": "ne", "value": "pro"}, False),
        ({"path": "data.missing", "op": "ne", "value": "pro"}, True),
        ({"path": "data.plan", "op": "in", "value": ["free", "pro"]}, True),
        ({"path": "data.seats", "op": "gt", "value": 3}, True),
        ({"path": "data.seats", "op": "lt", "value": 3}, False),
        ({"path": "data.seats", "op": "gt", "value": "three"}, False),  # not comparable
        ({"path": "data.nested.flag", "op": "eq", "value": True}, True),
        ({"path": "recipient.phone", "op": "exists"}, False),
        ({"path": "recipient.email", "op": "exists"}, True),
        ({"path": "recipient.phone", "op": "exists", "value": False}, True),
        ({"path": "steps.wait.outcome", "op": "eq", "value": "timeout"}, True),
        ({"not": {"path": "data.plan", "op": "eq", "value": "pro"}}, False),
        (
            {
                "all": [
                    {"path": "data.plan", "op": "eq", "value": "pro"},
                    {
                        "any": [
                            {"path": "data.x", "op": "exists"},
                            {"path": "data.seats", "op": "gt", "value": 1},
                        ]
                    },
                ]
            },
            True,
        ),
    ],
)
def test_conditions_over_data_recipient_and_steps(
    condition: dict[str, Any], expected: bool
) -> None:
    stored = parse_flow(
        {"steps": [{"id": "wait", "type": "delay", "seconds": 1},
                   {"id": "b", "type": "branch", "if": condition, "then": [delay("c")]}]}
    ).stored()[1]["if"]  # fmt: skip
    assert holds(stored, FACTS) is expected
    assert condition_paths(stored)


def test_a_trigger_gets_the_bulk_body_limit_for_its_thousand_recipients() -> None:
    from api.main import is_bulk_route

    assert is_bulk_route("/v1/flows/onboarding/trigger")
    assert not is_bulk_route("/v1/flows/onboarding")
