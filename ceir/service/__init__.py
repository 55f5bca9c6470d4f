"""Domain services: each operation validates, checks permissions, runs in one
transaction and keeps the in-memory lists in step with the database."""
