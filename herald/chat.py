"""A user's chat address: one Slack channel, or one Teams or Discord incoming webhook.

The API takes ``chat: {"slack": "<channel id>"} | {"teams": "<webhook url>"} |
{"discord": "<webhook url>"}``; a send carries it as the string ``<kind>:<target>``
(``SendRequest.address``). A webhook URL is where Herald will POST on the user's behalf,
so only the services' own webhook hosts are accepted, over https (plus the origins of
``HERALD_CHAT_WEBHOOK_ORIGINS``, which the local fakes use).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

KINDS = ("slack", "teams", "discord")
MAX_TARGET = 2048
# A Slack conversation id (C…, G…, D…, U…) or a channel name (#general).
_SLACK_CHANNEL = re.compile(r"^#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# Teams incoming webhooks (Office 365 connectors, and Workflows/Power Automate URLs).
_TEAMS_HOSTS = (".webhook.office.com", ".logic.azure.com", ".api.powerplatform.com")
_DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")


class BadChatAddress(ValueError):
    """A chat address Herald will not use; ``field`` names the part (``chat.teams``)."""

    def __init__(self, message: str, field: str = "chat") -> None:
        super().__init__(message)
        self.field = field


def origins(setting: str) -> list[str]:
    """``HERALD_CHAT_WEBHOOK_ORIGINS`` as a list."""
    return [origin.strip() for origin in setting.split(",") if origin.strip()]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_target(kind: str, target: str, extra_origins: Iterable[str] = ()) -> str:
    """``target`` if it is a usable ``kind`` address; ``BadChatAddress`` otherwise."""
    field = f"chat.{kind}"
    if kind not in KINDS:
        raise BadChatAddress(f"unknown chat service {kind[:40]!r}; one of {', '.join(KINDS)}")
    if not isinstance(target, str) or not target:
        raise BadChatAddress(f"{field} must be a non-empty string", field)
    if len(target) > MAX_TARGET:
        raise BadChatAddress(f"{field} is longer than {MAX_TARGET} characters", field)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        raise BadChatAddress(f"{field} contains control characters", field)
    if kind == "slack":
        if not _SLACK_CHANNEL.match(target):
            raise BadChatAddress(f"{field} must be a Slack channel id such as C0123ABCD", field)
        return target
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as err:
        raise BadChatAddress(f"{field} is not a valid URL: {err}", field) from err
    if parts.username is not None or parts.password is not None:
        raise BadChatAddress(f"{field} may not carry credentials", field)
    if _origin(target) in {o.rstrip("/").lower() for o in extra_origins}:
        return target
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or parts.port not in (None, 443):
        raise BadChatAddress(f"{field} must be an https URL", field)
    if kind == "teams":
        if not host.endswith(_TEAMS_HOSTS):
            raise BadChatAddress(f"{field} must be a Teams incoming webhook URL", field)
    elif host not in _DISCORD_HOSTS or not parts.path.startswith("/api/webhooks/"):
        raise BadChatAddress(f"{field} must be a Discord webhook URL (/api/webhooks/…)", field)
    return target


def check_address(value: Mapping[str, str], extra_origins: Iterable[str] = ()) -> dict[str, str]:
    """A user's ``chat`` field: exactly one service and its target."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise BadChatAddress(f"chat names exactly one of {', '.join(KINDS)}")
    ((kind, target),) = value.items()
    return {kind: check_target(str(kind), target, extra_origins)}


def encode(value: Mapping[str, str]) -> str:
    """A stored chat address as a send's address string."""
    ((kind, target),) = value.items()
    return f"{kind}:{target}"


def decode(address: str) -> tuple[str, str]:
    """``(kind, target)`` of a send's address."""
    kind, _, target = address.partition(":")
    return kind, target
