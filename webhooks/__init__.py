"""``herald webhooks``: delivers status events to tenants' webhook endpoints."""
