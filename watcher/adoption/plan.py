"""Plan: everything init writes, decided before anything is; what already exists is refused, the
files are written whole (a config that does not load is undone), or, for a dry run, staged."""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.adoption.answers import Answers
from watcher.adoption.caddy import AddedCaddy, added_caddy, caddy_overlay
from watcher.adoption.compose_file import ComposeFile
from watcher.adoption.overlays import CADDY_OVERLAY, COLORS, NEW_CONFIG, app_section, overlay, quoted
from watcher.adoption.proposal import bind_source, diff, proposed
from watcher.adoption.rewrite import rewritten
from watcher.errors import ConfigError, UsageError, WatcherError

#: The proposed edits of the user's compose file, saved beside it (init never edits the file itself).
DIFF_NAME = "watcher-init.diff"


@dataclass(frozen=True)
class Plan:
    """Everything init writes, decided before anything is."""

    compose: ComposeFile
    answers: Answers
    config_path: Path
    config_before: str | None
    caddyfile: Path

    @classmethod
    def make(
        cls, compose: ComposeFile, answers: Answers, *, config_path: Path, caddyfile: Path | None
    ) -> Plan:
        try:
            before = config_path.read_text() if config_path.is_file() else None
        except OSError as exc:
            raise UsageError(f"{config_path}: cannot read: {exc.strerror}") from None
        return cls(
            compose,
            answers,
            config_path,
            before,
            (caddyfile or compose.dir / f"Caddyfile.{answers.app}").resolve(),
        )

    @property
    def app_count(self) -> int:
        """How many apps the config will have: with several, every command needs --app."""
        apps = tomllib.loads(self.config_before).get("apps") if self.config_before else None
        return len(apps or {}) + 1

    @property
    def overlays(self) -> dict[Path, str]:
        """The colour overlays and, when the compose file has no Caddy, the one that adds it."""
        colours = {
            self.compose.dir / f"compose.{color}.yml": overlay(self.compose, self.answers, color)
            for color in COLORS
        }
        if self.added_caddy is None:
            return colours
        return {**colours, self.compose.dir / CADDY_OVERLAY: self._caddy_overlay(self.added_caddy)}

    @property
    def _host_caddy(self) -> dict[str, Any]:
        """The config's `[caddy]` table as it is before init (empty for a new config)."""
        return dict(tomllib.loads(self.config_before).get("caddy") or {}) if self.config_before else {}

    @property
    def added_caddy(self) -> AddedCaddy | None:
        site = self.answers.site or self._host_caddy.get("site", ":80")
        return added_caddy(self.compose, self.answers, site)

    def _caddy_overlay(self, caddy: AddedCaddy) -> str:
        run_dir = self.config_path.parent / self._host_caddy.get("run_dir", ".watcher/run")
        mount = self._host_caddy.get("mount", "/run/watcher")
        return caddy_overlay(
            caddy,
            self.answers.app,
            bind_source(self.caddyfile, self.compose.dir),
            bind_source(run_dir.resolve(), self.compose.dir),
            mount,
        )

    @property
    def diff_path(self) -> Path:
        """Where the proposed edits of the compose file are saved, for `patch -p1` there."""
        return self.compose.dir / DIFF_NAME

    def changes(self, host: Any) -> str | None:
        """The proposed edits of the compose file as a unified diff ("" none needed; None: its
        layout is beyond line edits)."""
        edited = proposed(self.compose, self.answers, host.caddy.run_dir, host.caddy.mount)
        return diff(self.compose, edited) if edited is not None else None

    def section(self, project_dir: str | None = None) -> str:
        relative = os.path.relpath(self.compose.dir, self.config_path.parent)
        added = self.added_caddy
        return app_section(
            self.compose,
            self.answers,
            relative if project_dir is None else project_dir,
            added.name if added else None,
            platform_key="platform" in self._old_section,
        )

    @property
    def _old_section(self) -> dict[str, Any]:
        """The app's section in the config before init, as read ({} when it has none)."""
        apps = tomllib.loads(self.config_before).get("apps") if self.config_before else None
        return dict((apps or {}).get(self.answers.app) or {})

    @property
    def rewrites(self) -> bool:
        """Whether the app is in the config already (--force rewrites it, keeping the user's keys)."""
        apps = tomllib.loads(self.config_before).get("apps") if self.config_before else None
        return self.answers.app in (apps or {})

    def config_text(self) -> str:
        """The whole config file after init: the old one with the app appended or rewritten, or a
        new one."""
        if self.config_before is None:
            return NEW_CONFIG + self.section()
        if self.rewrites:
            return rewritten(self.config_before, self.answers.app, self.section())[0]
        return self.config_before.rstrip("\n") + "\n\n" + self.section()

    def rewrite_changes(self) -> list[str]:
        """What rewriting the app's section changes, key by key (nothing for a new app)."""
        return (
            rewritten(self.config_before or "", self.answers.app, self.section())[1] if self.rewrites else []
        )

    def refuse_existing(self, *, force: bool) -> None:
        """Nothing is overwritten without --force; an app's section is never replaced or doubled."""
        problems = [
            f"{shown(path)} exists: init never overwrites a file; pass --force to replace it"
            for path in [*self.overlays, self.caddyfile, self.diff_path]
            if path.exists() and not force
        ]
        problems += self._config_problems(force)
        if problems:
            raise UsageError("nothing written:\n" + "\n".join(f"  {problem}" for problem in problems))

    def _config_problems(self, force: bool) -> list[str]:
        if self.config_before is None:
            return []
        where = shown(self.config_path)
        try:
            raw = tomllib.loads(self.config_before)
        except tomllib.TOMLDecodeError as exc:
            return [f"{where} is not valid TOML ({exc}): fix it first"]
        if "app" in raw:
            return [
                f"{where} uses the single-app [app] layout: move it to [apps.<name>] tables first, or write "
                f"{self.answers.app}'s config elsewhere with --config"
            ]
        clashes = self._clashes(raw)
        if self.answers.app in (raw.get("apps") or {}):
            if not force:
                clashes.append(
                    f"{where} already has [apps.{self.answers.app}]: pass --force to rewrite it (init "
                    "keeps every key of it that it does not decide itself), or adopt under another "
                    "name with --app"
                )
        elif not force:
            clashes.append(
                f"{where} exists: pass --force to append [apps.{self.answers.app}] to it (the rest "
                "stays as is)"
            )
        return clashes

    def _clashes(self, raw: dict[str, Any]) -> list[str]:
        """What the app would share with one already configured: the config would not load
        (two apps never share a compose project, nor a Caddy route), so say it now, dry run or not."""
        answers, where = self.answers, shown(self.config_path)
        ours = {answers.project, *(f"{answers.project}-{color}" for color in COLORS)}
        site = answers.site or (raw.get("caddy") or {}).get("site", ":80")
        problems = []
        for name, app in (raw.get("apps") or {}).items():
            if name == answers.app:
                continue  # the app itself, rewritten
            project = app.get("project", name)
            if ours & {project, *(f"{project}-{color}" for color in COLORS)}:
                problems.append(
                    f"{where}: app {name} runs in compose project {project}: two apps never share one"
                )
            caddy = app.get("caddy") or {}
            if (
                caddy.get("path") is None
                and caddy.get("site", (raw.get("caddy") or {}).get("site", ":80")) == site
            ):
                problems.append(
                    f"{where}: app {name} already answers at {site}: give {answers.app} its own "
                    "site with --site"
                )
        return problems

    # -- writing, or not ---------------------------------------------------------------------------

    def write(self) -> tuple[str, Any]:
        """Write the overlays and the config, load it as watcher will, write the Caddyfile; a
        config that does not load is undone (the files are restored) before the error is raised."""
        written: list[tuple[Path, str | None]] = []

        def put(path: Path, text: str) -> None:
            written.append((path, path.read_text() if path.exists() else None))
            _write(path, text)

        try:
            for path, text in {**self.overlays, self.config_path: self.config_text()}.items():
                put(path, text)
            host = _load(self.config_path)
            snippet = self.snippet(host)
            put(self.caddyfile, snippet)
            changes = self.changes(host)
            if changes:
                put(self.diff_path, changes)
        except BaseException:
            for path, previous in reversed(written):
                _restore(path, previous)
            raise
        return snippet, host

    def preview(self) -> tuple[str, Any]:
        """What `write` would make of the files, staged in a temporary directory: the compose
        file, the overlays, and a config of this app alone with the host's Caddy settings."""
        with tempfile.TemporaryDirectory(prefix="watcher-init-") as tmp:
            root = Path(tmp)
            _write(root / self.compose.path.name, self.compose.text)
            for path, text in self.overlays.items():
                _write(root / path.name, text)
            staged = root / self.config_path.name
            _write(staged, self._staged_caddy() + self.section("."))
            host = _load(staged)
            return self.snippet(host).replace(str(staged), str(self.config_path)), host

    def _staged_caddy(self) -> str:
        """The `[caddy]` table the real config will have, its paths made absolute."""
        caddy = self._host_caddy
        base = self.config_path.parent
        caddy["run_dir"] = str(base / caddy.get("run_dir", ".watcher/run"))
        admin = caddy.get("admin")
        if isinstance(admin, str) and admin.startswith("unix://"):
            caddy["admin"] = "unix://" + str(base / admin.removeprefix("unix://"))
        return "[caddy]\n" + "".join(f"{key} = {quoted(str(value))}\n" for key, value in caddy.items()) + "\n"

    def snippet(self, host: Any) -> str:
        from watcher.caddyfile import render

        return render(host, [host.app(self.answers.app)])


def _load(path: Path) -> Any:
    """The config as watcher will read it (no environment overrides): what init wrote must load."""
    from watcher.config import load_host

    try:
        return load_host(path, {})
    except ConfigError as exc:
        raise ConfigError(f"nothing written: the config init made does not load: {exc}") from None


def configured_apps(path: Path) -> list[str]:
    """The apps the config at `path` has already (none when it is missing or unreadable: the
    plan says why, later)."""
    try:
        return list(tomllib.loads(path.read_text()).get("apps") or {})
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return []


def config_path_for(compose: ComposeFile, given: str | None) -> Path:
    return Path(given).resolve() if given else compose.dir / "watcher.toml"


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a crash never leaves half a config."""
    temporary = path.with_name(f".{path.name}.watcher-init")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise WatcherError(f"cannot write {path}: {exc.strerror}") from None


def _restore(path: Path, previous: str | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, previous)


def shown(path: Path) -> str:
    """A path as the user would type it: relative to here when under here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
