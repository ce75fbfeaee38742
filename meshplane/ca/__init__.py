"""meshplane.ca: the built-in CA (root, workload certificates, rotation) and join tokens.

Nothing here imports the rest of meshplane: the xDS server and the app use it, and the pure
stages may import only `meshplane.ca.spiffe` (a leaf), never keys or tokens.
"""
