"""``prepare``: the recipient lookup and the render of one send, as one local activity.

One step instead of two keeps a clean send's history short (one marker instead of two).
The lookup and the render stay separate functions (``recipients.py``, ``templates.py``):
this only runs them in order, rendering in the recipient's locale. A template that
cannot be rendered is an answer, not an error: the workflow decides what follows.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.recipients import RecipientActivities
from activities.templates import TemplateActivities
from herald.contracts import Prepared, PrepareRequest


class PrepareActivities:
    """Built once per channel worker around the recipient and template steps."""

    def __init__(self, recipients: RecipientActivities, templates: TemplateActivities) -> None:
        self._recipients = recipients
        self._templates = templates

    @activity.defn(name="prepare")
    async def prepare(self, request: PrepareRequest) -> Prepared:
        """Look the recipient up (logging ``accepted`` first if asked), then render."""
        recipient = await self._recipients.load_recipient(request.lookup)
        if recipient.suppressed_reason is not None or recipient.address is None:
            return Prepared(recipient=recipient)
        render = request.render
        if render.locale is None and recipient.locale is not None:
            render = render.model_copy(update={"locale": recipient.locale})
        try:
            message = await self._templates.render_template(render)
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            return Prepared(recipient=recipient, render_error=err.message)
        return Prepared(recipient=recipient, message=message)
