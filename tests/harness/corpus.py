"""A corpus stack's journey, as a new user takes it: `watcher init` on a copy of the stack's
compose file (tests/fixtures/corpus/<stack>) with the flags a user would pass, only the edits
init asks for, `docker compose up -d`, then deploy v1, v2, rollback, v2 again, cleanup and reset
under load through Caddy, and nothing of the colours left behind.

Each step's outcome, the hand edits it took, the requests sent and failed under load and what
was left behind make the stack's row of the corpus table (`Row`), written to
tests/artifacts/corpus/<stack>.json whether the journey got through or not;
`python -m tests.harness.corpus` prints the table of the last run.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.harness.leftovers import claim, remove_stack
from tests.harness.stack import CADDY_IMAGE, Stack, free_port
from tests.harness.traffic import Loads, under_loads

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "corpus"
STEPS = ("init", "up", "v1", "v2", "rollback", "v2 again", "cleanup", "reset")
#: Fast enough for a test, as a user may set them.
FAST = {"HEALTH_CHECK_INTERVAL": "1s", "HEALTH_CHECK_TIMEOUT": "90s", "VERIFY_WINDOW": "2s"}
RATES = {"fast_rate": 30, "slow_rate": 5, "fast_connections": 4, "slow_connections": 8}


@dataclass
class Row:
    """One stack's line of the corpus table."""

    stack: str
    steps: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STEPS, "not run"))
    hand_edits: list[str] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    left_behind: list[str] = field(default_factory=list)
    seconds: float = 0.0
    written: float = 0.0  # time.time(): a run's table shows the rows written during it

    def write(self) -> None:
        self.written = time.time()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{self.stack}.json").write_text(json.dumps(asdict(self), indent=1) + "\n")


@dataclass(frozen=True)
class Fix:
    """A hand edit a user makes when init refuses the file with `reason` in its message."""

    reason: str
    what: str
    file: str
    old: str
    new: str = ""


class Journey:
    """One corpus stack copied to a directory named as its compose project (as a user's
    /srv/<stack>), with the stand-in images, a free port for Caddy, and its row."""

    def __init__(self, stack: str, images: dict[str, str], *, fixes: tuple[Fix, ...] = ()) -> None:
        self.name = f"wa{uuid.uuid4().hex[:8]}"
        self.outer = Path(tempfile.mkdtemp(prefix=f"watcher-{self.name}-"))
        claim(self.outer)
        root = self.outer / self.name  # the directory's name is the compose project's
        shutil.copytree(FIXTURES / stack, root)
        self.stack = Stack(root, self.name, free_port())
        self.row = Row(stack)
        self.fixes = fixes
        self.failures: list[str] = []
        self.started = time.monotonic()
        for path in root.iterdir():
            if path.is_file() and path.suffix != ".xml":
                text = path.read_text()
                for old, new in images.items():
                    text = text.replace(old, new)
                path.write_text(text)
        self.before = docker_objects()

    @property
    def root(self) -> Path:
        return self.stack.root

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step of the table: its outcome is recorded; a failure is kept for the end of the
        journey (`failures`), so the steps after it still fill the table."""
        try:
            yield
        except Exception as exc:
            text = str(exc).strip()
            self.row.steps[name] = f"failed: {text.splitlines()[0][:300] if text else type(exc).__name__}"
            self.failures.append(f"{name}: {text or type(exc).__name__}")
        else:
            self.row.steps[name] = "ok"

    def ok(self, *names: str) -> bool:
        return all(self.row.steps[n] == "ok" for n in names)

    def edit(self, what: str, file: str, old: str, new: str = "") -> None:
        """A hand edit: replace `old` in `file` (it must be there), recorded in the row."""
        path = self.root / file
        text = path.read_text()
        assert old in text, f"{file} has no {old!r} to edit ({what})"
        path.write_text(text.replace(old, new, 1))
        self.row.hand_edits.append(what)

    def watcher(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        proc = self.stack.watcher(*args, **{**FAST, **env})
        if check and proc.returncode != 0:
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            why = next((line for line in reversed(lines) if "error" in line.lower() or "FAILED" in line), "")
            raise AssertionError(
                f"watcher {' '.join(args)} exited {proc.returncode}: {why.strip()}\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr.strip()[-1500:]}"
            )
        return proc

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`docker compose ARGS` as the user types it in the project's directory."""
        return subprocess.run(["docker", "compose", *args], cwd=self.root, capture_output=True, text=True)

    # -- the steps ---------------------------------------------------------------------------

    def init(self, *flags: str) -> subprocess.CompletedProcess[str]:
        """`watcher init FLAGS`; while it refuses for a reason one of the stack's fixes answers,
        the user makes that edit and runs it again."""
        applied: set[Fix] = set()
        while True:
            # --caddy-image: the offline Caddy (a user takes the default, caddy:2.11, from Docker Hub).
            offline = ("--caddy-image", CADDY_IMAGE)
            verify = ("--verify-url", f"{self.stack.url}/version")
            proc = self.watcher("init", *flags, *verify, *offline, "--yes", check=False)
            if proc.returncode == 0:
                return proc
            todo = [f for f in self.fixes if f.reason in proc.stderr and f not in applied]
            assert todo, f"init refused: {proc.stderr.strip()}"
            for fix in todo:
                self.edit(fix.what, fix.file, fix.old, fix.new)
                applied.add(fix)

    def apply_diff(self) -> None:
        """`patch -p1 < watcher-init.diff`, as init's steps say (when it proposed changes)."""
        diff = self.root / "watcher-init.diff"
        if diff.exists():
            patched = subprocess.run(
                ["patch", "-p1", "-i", str(diff)], cwd=self.root, capture_output=True, text=True
            )
            assert patched.returncode == 0, f"patch: {patched.stdout}{patched.stderr}"

    def publish_caddy(self) -> None:
        """The Caddy init adds (compose.watcher.yml) publishes the port the app did; this test
        publishes it on a free loopback port instead (the stacks run side by side)."""
        path = self.root / "compose.watcher.yml"
        assert path.exists(), "init added no Caddy service (compose.watcher.yml)"
        text = path.read_text()
        published = re.findall(r'^ *- "([^"]+:80)"', text, flags=re.M)
        assert published, f"compose.watcher.yml publishes no port of Caddy:\n{text}"
        for port in published:
            text = text.replace(f'"{port}"', f'"127.0.0.1:{self.stack.port}:80"', 1)
        path.write_text(text)

    def up(self) -> None:
        proc = self.compose("up", "-d")
        assert proc.returncode == 0, f"docker compose up -d: {proc.stderr.strip()[-1500:]}"

    @contextlib.contextmanager
    def load(self, paths: tuple[str, ...] = ("",)) -> Iterator[dict[str, Loads]]:
        """Keep-alive POSTs (and slow ones) on each path through Caddy; 0 failed, some sent."""
        with under_loads(self.stack, list(paths), settle=1.0, **RATES) as loads:
            yield loads
        for each in loads.values():
            self.row.sent += each.sent
            self.row.failed += each.failed
        for path, each in loads.items():
            assert each.failed == 0, f"{each.failed} failed on {path or '/'}: {each.describe()}"
            assert each.sent > 20, f"only {each.sent} sent on {path or '/'}"

    def serving(self, version: str, path: str = "") -> None:
        seen = None
        for _ in range(50):
            seen = _get(f"{self.stack.url}{path}/version")
            if seen == version:
                return
            time.sleep(0.2)
        raise AssertionError(f"{path or '/'} serves {seen!r} through Caddy, not {version}")

    def live(self) -> str:
        color = self.stack.live_route()
        assert color in ("blue", "green"), f"route file says {color!r}"
        return color

    def container_image(self, color: str, service: str) -> str:
        names = self.stack.containers_of(color, service)
        assert names, f"no {service} container on {color}"
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{.Config.Image}}", names[0]], capture_output=True, text=True
        )
        return out.stdout.strip()

    def logs(self, container: str) -> str:
        proc = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        return proc.stdout + proc.stderr

    def left_behind(self) -> list[str]:
        """Docker objects of the colour projects, or named after them, that were not there
        before the journey."""
        now = docker_objects()
        colours = (f"{self.name}-blue", f"{self.name}-green")
        return sorted(o for o in now - self.before if any(c in o for c in colours))

    def journey(
        self, init_flags: tuple[str, ...], *, paths: tuple[str, ...] = ("",), after: Hooks | None = None
    ) -> None:
        """The whole journey of the table, each step recorded, with the stack's own checks; a
        step runs when the steps it builds on passed; asserts at the end that every step did."""
        after = after or {}
        with self.step("init"):
            self.init(*init_flags)
            self.apply_diff()
            for config_edit in after.get("config", []):
                config_edit(self)
            self.publish_caddy()
        if self.ok("init"):
            with self.step("up"):
                self.up()
        if self.ok("up"):
            with self.step("v1"):
                self.watcher("deploy", "v1")
                for path in paths:
                    self.serving("v1", path)
                _run(after, "v1", self)
        for name, argv, version, needs in (
            ("v2", ("deploy", "v2"), "v2", ("v1",)),
            ("rollback", ("rollback",), "v1", ("v2",)),
            ("v2 again", ("deploy", "v2"), "v2", ("rollback",)),
        ):
            if self.ok(*needs):
                with self.step(name):
                    self.swap(argv, version, paths)
                    _run(after, name, self)
        if self.ok("up"):
            with self.step("cleanup"):
                _run(after, "before cleanup", self)
                live = _get(f"{self.stack.url}/version")
                self.watcher("cleanup")
                if live in ("v1", "v2"):  # what served before it still does
                    self.serving(live)
            with self.step("reset"):
                self.watcher("reset", "--force")
        self.row.left_behind = self.left_behind()
        if self.row.left_behind:
            self.failures.append(f"left behind: {', '.join(self.row.left_behind)}")
        assert not self.failures, "\n".join(self.failures)

    def swap(self, argv: tuple[str, ...], version: str, paths: tuple[str, ...]) -> None:
        """`watcher ARGV` under load: 0 failed, both versions seen on every path, `version` after."""
        with self.load(paths) as loads:
            self.watcher(*argv)
            for path in paths:
                self.serving(version, path)
        for path, each in loads.items():
            assert {"v1", "v2"} <= each.versions(), f"{path or '/'} saw {each.versions()}"

    def finish(self) -> None:
        self.row.seconds = round(time.monotonic() - self.started, 1)
        self.row.write()
        remove_stack(self.name)
        shutil.rmtree(self.outer, ignore_errors=True)


#: A stack's own check or edit, run at a moment of its journey (a step's name, "config" after
#: init, "before cleanup").
Check = Callable[["Journey"], None]
Hooks = dict[str, list[Check]]


def _run(after: Hooks, when: str, journey: Journey) -> None:
    for check in after.get(when, []):
        check(journey)


def _get(url: str) -> str | None:
    import httpx

    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})"
    return response.text.strip() if response.is_success else f"{response.status_code} {response.text[:80]!r}"


def docker_objects() -> set[str]:
    """Every container, network and volume name on the engine, by kind."""
    found = set()
    for kind, argv in (
        ("container", ["docker", "ps", "-a", "--format", "{{.Names}}"]),
        ("network", ["docker", "network", "ls", "--format", "{{.Name}}"]),
        ("volume", ["docker", "volume", "ls", "--format", "{{.Name}}"]),
    ):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        found.update(f"{kind} {name}" for name in out.split())
    return found


def table(rows: list[dict]) -> str:
    """The corpus table, in Markdown: stack x steps, hand edits, failed/sent, left behind."""
    head = ["stack", *STEPS, "hand edits", "failed/sent", "left behind", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(rows, key=lambda r: r["stack"]):
        cells = [row["stack"]]
        cells += [_cell(row["steps"][s]) for s in STEPS]
        cells += [
            str(len(row["hand_edits"])) + (": " + "; ".join(row["hand_edits"]) if row["hand_edits"] else ""),
            f"{row['failed']}/{row['sent']}",
            ", ".join(row["left_behind"]) or "nothing",
            str(row["seconds"]),
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def _cell(outcome: str) -> str:
    return "-" if outcome == "not run" else outcome.replace("failed: ", "FAIL: ")[:120]


def rows(since: float = 0.0) -> list[dict]:
    """The rows written since then (each stack's last)."""
    found = [json.loads(p.read_text()) for p in sorted(ARTIFACTS.glob("*.json"))]
    return [row for row in found if row.get("written", 0.0) >= since]


if __name__ == "__main__":
    found = rows()
    print(table(found) if found else f"no rows in {ARTIFACTS}")
    (ARTIFACTS.parent / "corpus.json").write_text(json.dumps(found, indent=1) + "\n")
    sys.exit(0)
