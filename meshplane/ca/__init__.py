"""meshplane.ca."""
