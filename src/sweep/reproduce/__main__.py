"""`python -m sweep.reproduce <config-hash-prefix>`: see sweep/reproduce/cli.py."""

from sweep.reproduce.cli import main

raise SystemExit(main())
