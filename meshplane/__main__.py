"""`python -m meshplane` runs the CLI."""

from meshplane.cli import main

raise SystemExit(main())
