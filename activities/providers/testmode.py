"""The provider of test keys' notifications: answers by address and never sends anything.

A notification made with a test key goes through its whole lifecycle (recipient,
template, sending, retries, the final status) so a client can try its integration, but
no message leaves Herald. The address chooses the outcome:

- containing ``+fail`` (``ada+fail@example.com``): refused for good on the first attempt;
- containing ``+retry``: a transient failure on attempts 1 and 2, accepted on the third
  (with ``HERALD_MAX_ATTEMPTS`` under 3 it ends ``failed``);
- anything else: accepted at once.
"""

from __future__ import annotations

from temporalio import activity

from activities.providers.base import Provider, ProviderError
from herald.contracts import SendRequest

FAIL_MARK = "+fail"
RETRY_MARK = "+retry"
# Attempts a ``+retry`` address fails before it is accepted.
RETRY_FAILURES = 2


def attempt_of(request: SendRequest) -> int:
    """The provider attempt this is: Temporal's attempt number (the send activity's
    attempts are numbered as the provider's, its first being the workflow's own try)."""
    return activity.info().attempt if activity.in_activity() else 1


class TestModeProvider(Provider):
    """Answers like a provider would, decided by the address alone."""

    __test__ = False  # not a pytest test class, whatever its name says
    name = "test"

    async def deliver(self, request: SendRequest) -> str:
        """Accept, refuse or fail transiently as the address asks; nothing is sent."""
        attempt = attempt_of(request)
        if FAIL_MARK in request.address:
            raise ProviderError(
                "test mode: the address asks for a permanent failure (+fail)",
                permanent=True,
                provider=self.name,
            )
        if RETRY_MARK in request.address and attempt <= RETRY_FAILURES:
            raise ProviderError(
                f"test mode: the address asks for a transient failure on attempt {attempt} "
                f"of the first {RETRY_FAILURES} (+retry)",
                permanent=False,
                provider=self.name,
            )
        return f"test-{request.idempotency_key}"


TEST_MODE = TestModeProvider()
