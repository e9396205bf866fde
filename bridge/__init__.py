"""The RabbitMQ bridge: notification requests queued by other services become the same
``NotificationWorkflow`` starts as ``POST /v1/notifications``."""
