"""The REST API (FastAPI): submissions, status, events, cancel and resend."""
