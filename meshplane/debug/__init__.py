"""meshplane.debug."""
