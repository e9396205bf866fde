"""Failure activity: publish a notification whose retries are exhausted to ``herald.failed``.

Downstream consumers learn of it there, and ``herald dead replay`` resends it once the
cause is fixed. The message id is the notification id and send cycle, so the copy a
retried activity may publish again is recognisably the same message.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from herald import amqp
from herald.contracts import FailedNotification

# Header values are capped: the full error is in the body.
_HEADER_LIMIT = 1_000


class FailureActivities:
    """Built once per core worker around the process's RabbitMQ publisher."""

    def __init__(self, publisher: amqp.Publisher) -> None:
        self._publisher = publisher

    @activity.defn(name="publish_failed")
    async def publish_failed(self, failed: FailedNotification) -> None:
        """Publish ``failed`` with a broker confirm; raise (and be retried) otherwise."""
        message = amqp.json_message(
            failed.model_dump_json().encode(),
            message_id=failed.message_id,
            headers={amqp.ERROR_HEADER: failed.last_error[:_HEADER_LIMIT]},
        )
        try:
            await self._publisher.publish(amqp.FAILED, failed.channel.value, message)
        except amqp.PublishFailed as err:
            raise ApplicationError(str(err), type="PublishFailed") from err
