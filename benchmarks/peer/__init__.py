"""The design a plain queue would use for the same job, written fairly, for
``benchmarks.peer_queue`` to measure next to Herald.

An HTTP API (``api.py``: FastAPI on uvicorn, as Herald's) inserts one row per email into
its own PostgreSQL table through a pool of asyncpg connections, publishes a persistent
message to a durable RabbitMQ queue with publisher confirms, and answers ``202`` once the
broker has confirmed it. A consumer (``consumer.py``: manual acks, bounded prefetch) sends
each email over SMTP through a small pool of kept-open connections, marks its row ``sent``
and only then acks; a failed send is republished with its attempt number, up to three
attempts. ``environment.py`` sets it all up for a benchmark and takes it down again.

What it leaves out, which Herald does: API keys and rate limits, idempotency keys,
recipients and templates looked up and rendered per send, the per-transition event log,
timers, cancellation and a history of every step.
"""
