"""Worker processes: one type per task queue (core, email, sms, push)."""
