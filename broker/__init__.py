"""A Redis-backed job broker with the seed HTTP API."""
