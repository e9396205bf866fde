"""Email through the HTTP APIs of SendGrid, Mailgun, Postmark and Amazon SES (v2).

Each provider sends the message SMTP would (``email.message_headers``: the ``Message-ID``
every attempt of one send shares, ``List-Unsubscribe`` and ``List-Unsubscribe-Post``)
as its API takes custom headers, and carries Herald's notification id and send cycle
where the API hands them back in its delivery events (SendGrid ``custom_args``, Mailgun
``v:`` variables, Postmark ``Metadata``, SES ``EmailTags``): that is what the receipts of
``herald/receipts_email.py`` are keyed by. None of the four takes an idempotency key on
its send call; the shared ``Message-ID`` is what lets a receiver drop a second copy.

Error codes map onto Herald's classes: a refusal of our account or configuration
(credentials, an unverified sender, an unknown domain) is the provider's permanent fault
and fails over; a refusal of the address or message is the notification's alone; 5xx,
408 and 429 are transient, after ``Retry-After`` when the provider says.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from activities.providers.base import ProviderError
from activities.providers.email import message_headers, plain_text
from activities.providers.http import HttpProvider, _error_text, _retry_after
from activities.providers.registry import provider_factory
from herald.contracts import Channel, SendRequest
from herald.settings import Settings

# The names Herald's id and cycle travel under in each provider's event payloads.
NOTIFICATION_ARG = "herald_notification"
CYCLE_ARG = "herald_cycle"


def herald_args(request: SendRequest) -> dict[str, str]:
    """Herald's notification id and send cycle, as every provider's custom arguments."""
    return {NOTIFICATION_ARG: str(request.notification_id), CYCLE_ARG: str(request.cycle)}


def _required(config: Mapping[str, str], key: str, provider: str) -> str:
    value = config.get(key)
    if not value:
        raise ValueError(f"{provider} config needs {key!r}")
    return value


def _transient(response: httpx.Response, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        f"HTTP {response.status_code}: {_error_text(response)}",
        permanent=False,
        retry_after=retry_after if retry_after is not None else _retry_after(response),
    )


def _permanent(response: httpx.Response, detail: str, *, provider_fault: bool) -> ProviderError:
    return ProviderError(
        f"HTTP {response.status_code}: {detail}"[:400],
        permanent=True,
        provider_fault=provider_fault,
    )


def _is_transient(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code in (408, 429)


class _EmailApi(HttpProvider):
    """What the four share: the sender, the base URL, the headers of the message and the
    credentials check."""

    default_base_url: str
    label: str

    def __init__(
        self,
        config: Mapping[str, str],
        settings: Settings,
        client: httpx.AsyncClient,
        name: str,
    ) -> None:
        super().__init__(client)
        self.name = name
        self._base = (config.get("base_url") or self.default_base_url).rstrip("/")
        self.sender = config.get("from") or settings.email_from

    def sender_parts(self) -> tuple[str, str]:
        """The sender's display name and address."""
        return parseaddr(self.sender)

    def headers_of(self, request: SendRequest) -> dict[str, str]:
        """The custom headers of one message (those SMTP sends too)."""
        return message_headers(request, self.sender)

    @abstractmethod
    def check_request(self) -> httpx.Request:
        """A read-only request of the API that needs the same credentials as a send."""

    async def check(self) -> tuple[bool, str]:
        """Send ``check_request``: 2xx means the provider took the credentials; nothing
        is sent to anyone."""
        try:
            response = await self._client.send(self.check_request(), auth=self.auth)
        except httpx.HTTPError as err:
            return False, f"{self.label} unreachable: {type(err).__name__}"
        if response.is_success:
            return True, f"{self.label} accepted the credentials"
        detail = str(self.refusal(response))
        if response.status_code in (401, 403):
            return False, f"{self.label} refused the credentials: {detail}"
        return False, f"{self.label} answered {detail}"


class SendGridProvider(_EmailApi):
    """SendGrid v3 ``POST /v3/mail/send`` (Bearer API key, JSON); answers ``202`` with the
    message id in ``X-Message-Id``."""

    default_base_url = "https://api.sendgrid.com"
    label = "sendgrid"

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(config, settings, client, name)
        self._api_key = _required(config, "api_key", "sendgrid")

    def build_request(self, request: SendRequest) -> httpx.Request:
        """One personalization to the address; text then HTML content (the order SendGrid
        requires); Herald's id in ``custom_args``, which every event of it carries."""
        display, address = self.sender_parts()
        sender = {"email": address, "name": display} if display else {"email": address}
        body = {
            "personalizations": [{"to": [{"email": request.address}]}],
            "from": sender,
            "subject": request.message.subject or "",
            "content": [
                {"type": "text/plain", "value": plain_text(request.message.body) or " "},
                {"type": "text/html", "value": request.message.body},
            ],
            "headers": self.headers_of(request),
            "custom_args": herald_args(request),
        }
        return self._client.build_request(
            "POST",
            f"{self._base}/v3/mail/send",
            json=body,
            headers={"Authorization": f"Bearer {self._api_key}"},
        )

    def check_request(self) -> httpx.Request:
        """``GET /v3/scopes``: the scopes of the API key."""
        return self._client.build_request(
            "GET", f"{self._base}/v3/scopes", headers={"Authorization": f"Bearer {self._api_key}"}
        )

    def accepted(self, response: httpx.Response) -> str:
        """SendGrid's ``X-Message-Id`` (the body is empty)."""
        return response.headers["X-Message-Id"]

    def message_id(self, payload: Any) -> str:  # pragma: no cover - ``accepted`` reads the header
        raise KeyError("X-Message-Id")

    def refusal(self, response: httpx.Response) -> ProviderError:
        """401/403 (key, scopes, unverified sender) are ours; a 400 naming ``from`` is our
        configuration; any other 400/413 refuses this message; 429 waits for
        ``X-RateLimit-Reset``."""
        if response.status_code == 429 and _retry_after(response) is None:
            reset = response.headers.get("X-RateLimit-Reset", "")
            wait = max(0.0, float(reset) - time.time()) if reset.isdigit() else None
            return _transient(response, wait)
        if _is_transient(response):
            return _transient(response)
        fields = _sendgrid_fields(response)
        ours = response.status_code in (401, 402, 403) or any(
            field.split(".", 1)[0] in ("from", "reply_to") for field in fields
        )
        return _permanent(response, _error_text_sendgrid(response), provider_fault=ours)


def _sendgrid_errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _sendgrid_fields(response: httpx.Response) -> list[str]:
    return [str(e.get("field") or "") for e in _sendgrid_errors(response)]


def _error_text_sendgrid(response: httpx.Response) -> str:
    errors = _sendgrid_errors(response)
    if not errors:
        return _error_text(response)
    return "; ".join(
        f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
        for e in errors
    )


class MailgunProvider(_EmailApi):
    """Mailgun ``POST /v3/{domain}/messages`` (basic auth ``api:KEY``, form-encoded)."""

    default_base_url = "https://api.mailgun.net"
    label = "mailgun"

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(config, settings, client, name)
        self.auth = httpx.BasicAuth("api", _required(config, "api_key", "mailgun"))
        self._domain = _required(config, "domain", "mailgun")

    def build_request(self, request: SendRequest) -> httpx.Request:
        """``h:`` fields are the message's headers, ``v:`` fields the variables Mailgun's
        events return as ``user-variables``."""
        form = {
            "from": self.sender,
            "to": request.address,
            "subject": request.message.subject or "",
            "text": plain_text(request.message.body),
            "html": request.message.body,
        }
        form |= {f"h:{name}": value for name, value in self.headers_of(request).items()}
        form |= {f"v:{name}": value for name, value in herald_args(request).items()}
        return self._client.build_request(
            "POST", f"{self._base}/v3/{self._domain}/messages", data=form
        )

    def check_request(self) -> httpx.Request:
        """``GET /v3/domains/{domain}``: the sending domain (404 if the key does not own it)."""
        return self._client.build_request("GET", f"{self._base}/v3/domains/{self._domain}")

    def message_id(self, payload: Any) -> str:
        """Mailgun's ``id`` (``<...@domain>``)."""
        return str(payload["id"])

    def refusal(self, response: httpx.Response) -> ProviderError:
        """401/403 (key) and 404 (no such domain) are ours; a 400 about ``from`` is our
        configuration; any other 400 refuses this message."""
        if _is_transient(response):
            return _transient(response)
        detail = _error_text(response)
        ours = response.status_code in (401, 402, 403, 404) or (
            response.status_code == 400 and "'from'" in detail
        )
        return _permanent(response, detail, provider_fault=ours)


# Postmark's ErrorCodes that refuse our account or sender rather than the message:
# bad token, sender signature missing/unconfirmed, sending not allowed, account pending.
_POSTMARK_OURS = frozenset({10, 400, 401, 405, 412})


class PostmarkProvider(_EmailApi):
    """Postmark ``POST /email`` (``X-Postmark-Server-Token``, JSON)."""

    default_base_url = "https://api.postmarkapp.com"
    label = "postmark"

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(config, settings, client, name)
        self._token = _required(config, "server_token", "postmark")

    def build_request(self, request: SendRequest) -> httpx.Request:
        """Headers as ``[{Name, Value}]``; Herald's id in ``Metadata``."""
        body = {
            "From": self.sender,
            "To": request.address,
            "Subject": request.message.subject or "",
            "HtmlBody": request.message.body,
            "TextBody": plain_text(request.message.body),
            "Headers": [
                {"Name": name, "Value": value} for name, value in self.headers_of(request).items()
            ],
            "Metadata": herald_args(request),
            "MessageStream": "outbound",
        }
        return self._client.build_request(
            "POST",
            f"{self._base}/email",
            json=body,
            headers={"Accept": "application/json", "X-Postmark-Server-Token": self._token},
        )

    def check_request(self) -> httpx.Request:
        """``GET /server``: the server the token belongs to."""
        return self._client.build_request(
            "GET",
            f"{self._base}/server",
            headers={"Accept": "application/json", "X-Postmark-Server-Token": self._token},
        )

    def message_id(self, payload: Any) -> str:
        """Postmark's ``MessageID``."""
        return str(payload["MessageID"])

    def refusal(self, response: httpx.Response) -> ProviderError:
        """401 and the account's ErrorCodes are ours; 422 with any other code (300 invalid
        request, 406 inactive recipient) refuses this message."""
        if _is_transient(response):
            return _transient(response)
        try:
            payload = response.json()
            code, detail = int(payload.get("ErrorCode", -1)), str(payload.get("Message"))
        except (ValueError, AttributeError, TypeError):
            code, detail = -1, _error_text(response)
        ours = response.status_code in (401, 402, 403) or code in _POSTMARK_OURS
        return _permanent(response, f"ErrorCode {code}: {detail}", provider_fault=ours)


# SES error types that refuse our account or configuration rather than the message.
_SES_OURS = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_SES_TRANSIENT = frozenset({"TooManyRequestsException", "LimitExceededException", "Throttling"})


class SesProvider(_EmailApi):
    """Amazon SES v2 ``SendEmail`` (``POST /v2/email/outbound-emails``, JSON), signed
    with botocore's SigV4 signer."""

    label = "ses"

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        self._region = _required(config, "region", "ses")
        self.default_base_url = f"https://email.{self._region}.amazonaws.com"
        super().__init__(config, settings, client, name)
        self._credentials = Credentials(
            _required(config, "access_key_id", "ses"),
            _required(config, "secret_access_key", "ses"),
        )

    def build_request(self, request: SendRequest) -> httpx.Request:
        """``Simple`` content with its headers; Herald's id and cycle as ``EmailTags``."""
        body = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [request.address]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": request.message.subject or "", "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": plain_text(request.message.body), "Charset": "UTF-8"},
                        "Html": {"Data": request.message.body, "Charset": "UTF-8"},
                    },
                    "Headers": [
                        {"Name": name, "Value": value}
                        for name, value in self.headers_of(request).items()
                    ],
                }
            },
            "EmailTags": [
                {"Name": name, "Value": value} for name, value in herald_args(request).items()
            ],
        }
        return self._signed("POST", "/v2/email/outbound-emails", json.dumps(body).encode())

    def check_request(self) -> httpx.Request:
        """``GetAccount`` (``GET /v2/email/account``): the account's sending status."""
        return self._signed("GET", "/v2/email/account")

    def _signed(self, method: str, path: str, payload: bytes | None = None) -> httpx.Request:
        url = f"{self._base}{path}"
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        signed = AWSRequest(method=method, url=url, data=payload, headers=headers)
        SigV4Auth(self._credentials, "ses", self._region).add_auth(signed)
        return self._client.build_request(
            method, url, content=payload, headers=dict(signed.headers.items())
        )

    def message_id(self, payload: Any) -> str:
        """SES's ``MessageId``."""
        return str(payload["MessageId"])

    def refusal(self, response: httpx.Response) -> ProviderError:
        """The error type (``X-Amzn-ErrorType`` or the body's ``__type``) decides: the
        account's and the signature's are ours, throttling is transient, any other 400
        (``MessageRejected``, ``BadRequestException``) refuses this message."""
        kind = _ses_error_type(response)
        if _is_transient(response) or kind in _SES_TRANSIENT:
            return _transient(response)
        ours = response.status_code in (401, 403) or kind in _SES_OURS
        return _permanent(response, f"{kind}: {_error_text(response)}", provider_fault=ours)


def _ses_error_type(response: httpx.Response) -> str:
    kind = response.headers.get("X-Amzn-ErrorType", "")
    if not kind:
        try:
            kind = str(response.json().get("__type", ""))
        except (ValueError, AttributeError):
            kind = ""
    return kind.split(":", 1)[0].rsplit("#", 1)[-1] or f"HTTP{response.status_code}"


# Each is built from a factory's own arguments (config, settings, client, name), so the
# class itself is the factory, registered under its label.
for _api in (SendGridProvider, MailgunProvider, PostmarkProvider, SesProvider):
    provider_factory(Channel.email, _api.label)(_api)
