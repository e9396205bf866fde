"""Provider activities: one module per channel, one shared failure policy."""
