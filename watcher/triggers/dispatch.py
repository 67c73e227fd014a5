"""From "this tag was pushed" (a webhook) to a request of each app it concerns.

1. map the pushed image to the configured apps (registry and repository, lowercased);
2. of the event's tags, the highest the app's policy accepts (the legacy registry sends several);
   a tag newer than live yet refused is told to the notifier;
3. `App.request` (watcher/host.py) does the rest: staleness, the registry check (the tag must
   still name the event's digest), an operator's rollback, the one-push-one-job claim, the
   enqueue, exactly as for the poller.
"""

from __future__ import annotations

from watcher.host import App, Host, Outcome
from watcher.policy import older
from watcher.triggers.payloads import Push


def apps_for(host: Host, registry: str, repository: str) -> list[App]:
    return [
        app
        for app in host.apps.values()
        if (app.ref.registry, app.ref.repository) == (registry.lower(), repository.lower())
    ]


def push(host: Host, pushed: Push, *, by: str, repository: str | None = None) -> list[Outcome]:
    """A push a webhook reported: one outcome per configured app it concerns. `repository`: the
    GitHub repository the payload named, kept on the job."""
    apps = apps_for(host, pushed.registry, pushed.repository)
    if not apps:
        return [Outcome(None, "ignored", f"no configured app deploys {pushed.image}")]
    return [_push_one(app, pushed, by=by, repository=repository) for app in apps]


def _push_one(app: App, pushed: Push, *, by: str, repository: str | None) -> Outcome:
    refusals = {tag: app.policy.refusal(tag) for tag in pushed.tags}
    accepted = [tag for tag, why in refusals.items() if why is None]
    if not accepted:
        tag, why = next(iter(refusals.items()))
        refused = Outcome(app.name, "ignored", f"tag {tag}: {why} ({app.policy.describe()})", tag=tag)
        live = app.live()
        if live and older(app.policy, live.version, tag):  # newer than live, yet refused: say so
            app.host.tell_refused(refused)
        return refused
    tag = accepted[0] if len(accepted) == 1 else max(accepted, key=lambda t: (app.policy.order(t), t))
    # The event's digest must still be what the registry names: a replayed event is stale.
    return app.request(tag, source="webhook", by=by, digest=pushed.digest, repository=repository)
