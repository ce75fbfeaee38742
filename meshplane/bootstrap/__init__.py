"""meshplane.bootstrap."""
