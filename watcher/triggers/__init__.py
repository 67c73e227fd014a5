"""Triggers: what turns a pushed image into a queued deploy, with no human step.

    payloads.py  GitHub package events, Distribution/Harbor notifications, signatures: pure parsing
    dispatch.py  push -> the apps it concerns -> the tag the policy picks -> App.request
    webhook.py   Blueprint: /hooks/github, /hooks/registry
    control.py   Blueprint: /pause, /resume, /promote, /abort
    probes.py    Blueprint: /status, /metrics, /healthz, /readyz
    poller.py    the APScheduler registry poller
    server.py    `watcher serve`: the blueprints (and the dashboard's) under waitress, plus the poller
    commands.py  the CLI verbs serve, run, check-tags

Beside them, below the host: ../policy.py (the tag policies an App owns) and ../http.py (what
the endpoints, the dashboard's too, share: body limit, tokens, JSON answers, errors).
Triggers only request (App.request, watcher/host.py); the worker (watcher/queue/worker.py) deploys.
"""
