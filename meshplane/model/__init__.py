"""The mesh as one immutable value, built incrementally from config events."""
