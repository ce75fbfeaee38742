"""meshplane.local."""
