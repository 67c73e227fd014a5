"""deploy/: the systemd unit and its environment file, for watcher on a host without its image.

The unit is checked by systemd's own verifier (with ExecStart's program replaced by one that
exists here: the verifier refuses a missing binary, and watcher is not installed in
/usr/local/bin on a test host), and its command line by watcher's own parser, so a renamed
option or command breaks this test rather than the service.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path

from watcher import cli

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "watcher.service"
ENV = REPO / "deploy" / "watcher.env"


def unit() -> ConfigParser:
    parser = ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    exec_start = unit()["Service"]["ExecStart"]
    program = shlex.split(exec_start)[0]
    copy = tmp_path / "watcher.service"
    copy.write_text(UNIT.read_text().replace(program, shutil.which("true") or "/bin/true"))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and not verified.stderr.strip() and not verified.stdout.strip(), (
        verified.stdout + verified.stderr
    )


def test_the_unit_runs_watcher_run_as_a_user_in_the_docker_group_and_restarts() -> None:
    service = unit()["Service"]
    assert service["User"] not in ("", "root") and "docker" in service["SupplementaryGroups"].split()
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"].endswith("watcher.env")
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "watcher"
    args = cli.build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config


def test_the_env_file_names_only_what_watcher_reads_and_no_secret() -> None:
    read = set(re.findall(r"[A-Z_]+(?:\[_FILE\])?", cli.DESCRIPTION.split("environment:")[1]))
    known = {name.replace("[_FILE]", suffix) for name in read for suffix in ("", "_FILE")}
    for line in ENV.read_text().splitlines():
        setting = line.lstrip("#")
        if "=" not in setting or " " in setting.split("=")[0]:
            continue
        name, value = setting.split("=", 1)
        assert name in known, name
        secret = any(word in name for word in ("SECRET", "TOKEN", "PASSWORD", "USERNAME", "NOTIFY"))
        assert not secret or name.endswith("_FILE"), f"{name}: a secret goes in a file, named by {name}_FILE"
        assert not secret or value.startswith("/etc/watcher/secrets/")
