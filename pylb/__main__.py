"""``python -m pylb`` runs the CLI."""

from pylb.cli import main

raise SystemExit(main())
