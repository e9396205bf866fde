"""Temporal activities: every piece of I/O a notification needs, each idempotent."""
