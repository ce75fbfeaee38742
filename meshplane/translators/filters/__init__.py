"""One module per HTTP filter that VirtualService routes configure per route (fault, CORS):
each gives the filter's name, its HCM-level config and its per-route config."""
