"""The process-wide clients the API's services use, made once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.admission import SubmissionGate
from herald.intake import Intake
from herald.settings import Settings


@dataclass(frozen=True)
class Backends:
    """The process-wide clients a request needs."""

    engine: AsyncEngine
    temporal: Client
    settings: Settings
    admission: SubmissionGate
    # Every submission goes through it, each start holding an admission slot.
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "intake",
            Intake(self.temporal, self.engine, self.settings, slot=self.admission.slot),
        )
