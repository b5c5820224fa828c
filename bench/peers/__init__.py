"""The peers a user would pick instead of the broker, each run with the same shape: no-op jobs
enqueued by one producer process while worker processes drain them."""


class Unavailable(Exception):
    """This peer cannot run here; the message says why."""
