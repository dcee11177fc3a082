"""State stores: SQLite (default) and in-memory (tests)."""
