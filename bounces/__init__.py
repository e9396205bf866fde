"""``herald bounces``: takes email bounces (RFC 3464 delivery status notifications)."""
