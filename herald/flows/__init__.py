"""Flows: several steps, several channels, one durable run per recipient."""
