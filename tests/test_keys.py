from __future__ import annotations

from broker.store.keys import Keys


def test_every_key_sits_under_the_configured_prefix() -> None:
    keys = Keys("tenant1:")
    assert keys.job("abcdefgh") == "tenant1:job:abcdefgh"
    assert keys.queue("python3").startswith("tenant1:")
    assert keys.worker_jobs("abcdefgh") == keys.worker("abcdefgh") + ":jobs"
    assert keys.wake("sh").startswith(keys.wake_prefix)
