"""The worker agent and the HTTP client it shares with the `broker` CLI."""
