"""Chunk stores behind one protocol: SQLite (embedded default) and PostgreSQL + pgvector."""
