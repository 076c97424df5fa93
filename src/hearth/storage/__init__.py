"""Storage: a database opened from a URL (SQLite now, PostgreSQL later), append-only
migrations, and the call log that records every request's tokens, latency and cost."""
