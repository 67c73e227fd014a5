"""Notifications (apprise) and GitHub deployment statuses of what watcher does.

    event.py            what happened: a job started or ended, a pause, a resume, a refused trigger
    outbox.py           the bounded background sender: never blocks a deploy; drops and counts
    apprise_channel.py  one apprise URL, with the events it is sent
    github.py           a GitHub deployment per job, its statuses as the job goes
    notifier.py         the process's notifier: from events to the channels of their app

Data flows one way: the worker and each app's owner (watcher/host.py: a request refused, a
pause, a resume) tell the notifier; the engine knows nothing of it.
"""

from watcher.notify.notifier import Notifier, notifier_for

__all__ = ["Notifier", "notifier_for"]
