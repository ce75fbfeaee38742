"""One parser per kind: raw manifest spec -> typed spec dataclass, with every problem found."""
