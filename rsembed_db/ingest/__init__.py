"""The ingest engine: plan -> skip stored keys -> fetch -> embed -> write."""
