"""State stores: one SQL store (:mod:`.sqlbase`, one part per port) on SQLite (default) or PostgreSQL."""
