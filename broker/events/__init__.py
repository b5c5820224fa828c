"""Events: what happens to jobs, told to whoever listens.

feed.py fans the events stream (one XREAD per process) and the live-log channel out to the
SSE clients; outbox.py moves finished jobs from the outbox stream onto rq; webhook.py is the rq
task that posts them, and targets.py says where a webhook may go; notifier.py runs the rq worker.
"""
