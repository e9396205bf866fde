"""What the routes call: one function per operation, no HTTP in here."""
