"""Triggers: what turns a pushed image into a queued deploy, with no human step.

    payloads.py  GitHub package events, Distribution/Harbor notifications, signatures: pure parsing
    policy.py    tag policies: semver (ranges, pre-releases), regex, digest
    sink.py      the narrow face of the queue triggers use, and its adapter over watcher/queue
    dispatch.py  push -> app -> policy -> registry check -> one job per (app, tag, digest)
    webhook.py   the Flask receiver: /hooks/github, /hooks/registry, /pause, /resume, /status, /metrics, /healthz
    poller.py    the APScheduler registry poller
    server.py    `watcher serve`: the receiver under waitress plus the poller

Triggers only enqueue; the worker (watcher/queue/worker.py) deploys.
"""
