"""meshplane.xds."""
