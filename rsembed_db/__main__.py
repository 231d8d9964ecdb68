"""``python -m rsembed_db`` runs the CLI."""

from rsembed_db.cli.app import main

main()
