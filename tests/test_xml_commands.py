"""manage.py import_config and export_config."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from connector import xmlconfig
from connector.models import Calendar
from tests.xmlconfig_helpers import DATA, full_dump, read

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_config_prints_the_plan_and_imports(db: None) -> None:
    out, _ = run("import_config", str(DATA / "spec_example.xml"))

    assert out.splitlines()[:5] == [
        "+ service account serverId: delegate@exchange2007.innes.fr",
        "+ app registration o365: 00000000-0000-0000-0000-000000000000",
        "+ server serverId: ews, https://192.168.0.47",
        "+ server o365: ews, https://outlook.office365.com",
        "+ calendar room: server serverId, 2 room(s)",
    ]
    assert "note: server o365: This server uses EWS in Exchange Online" in out
    assert out.rstrip().endswith("Imported: 5 to add, 0 to change, 0 to remove.")
    assert Calendar.objects.filter(calendar_id="room").exists()


def test_import_config_dry_run_prints_the_plan_and_writes_nothing(db: None) -> None:
    before = full_dump()

    out, _ = run("import_config", "--dry-run", str(DATA / "spec_example.xml"))

    assert "+ calendar room: server serverId, 2 room(s)" in out
    assert "Dry run: 5 to add, 0 to change, 0 to remove; nothing was written." in out
    assert full_dump() == before


def test_import_config_of_the_same_file_again_says_nothing_to_change(db: None) -> None:
    run("import_config", str(DATA / "spec_example.xml"))

    out, _ = run("import_config", str(DATA / "spec_example.xml"))

    lines = out.splitlines()
    assert lines[-1] == "Nothing to change."
    assert not [line for line in lines if line[:1] in "+~-"]


def test_import_config_of_an_invalid_file_lists_problems_on_stderr(db: None) -> None:
    xmlconfig.import_configuration(read("spec_example.xml"))
    before = full_dump()
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"12 problem\(s\); nothing was changed"):
        call_command(
            "import_config",
            str(DATA / "invalid_many_problems.xml"),
            stdout=io.StringIO(),
            stderr=err,
        )

    lines = err.getvalue().splitlines()
    assert len(lines) == 12
    assert all(line.startswith("line ") for line in lines)
    assert full_dump() == before


def test_import_config_of_a_missing_file_says_so(db: None) -> None:
    with pytest.raises(CommandError, match="No such file"):
        run("import_config", "/nonexistent/configuration.xml")


def test_import_config_reads_standard_input(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stdin:
        buffer = io.BytesIO(read("manual_5_2_label.xml"))

    monkeypatch.setattr(sys, "stdin", Stdin)

    run("import_config", "-")

    assert Calendar.objects.get().label == "My Room"


def test_export_config_writes_to_stdout_without_secrets(db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    out, _ = run("export_config")

    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert '<scc:calendar id="hall-a" server="url(#onprem)">' in out
    assert "fake-secret" not in out
    assert "feedKey" not in out


def test_export_config_include_secrets_writes_a_private_file(db: None, tmp_path: Path) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))
    target = tmp_path / "configuration.xml"

    _, err = run("export_config", "-o", str(target), "--include-secrets")

    text = target.read_text()
    assert "<scc:password>fake-secret-onprem &amp; &lt;more&gt;</scc:password>" in text
    assert '<scc:clientsecret expires="2027-05-01">fake-secret-graph-client</scc:clientsecret>' in (
        text
    )
    assert '<param name="password">fake-secret-calendar-pwd</param>' in text
    assert '<param name="feedKey">fake-secret-feed-key-0123456789</param>' in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"Wrote {target}." in err


def test_import_config_exits_non_zero_with_line_messages(tmp_path: Path) -> None:
    """The real command line: exit status and stderr, on a database of its own."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "ENV_FILE": str(tmp_path / "none.env")}
    # A zone named on purpose: on a UTC host, system checks would add their W004 to stderr.
    env["TIME_ZONE"] = "Europe/Paris"
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)

    result = subprocess.run(
        [*manage, "import_config", str(DATA / "invalid_request_window_abc.xml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "line 17: calendar 'room': requestWindow: 'abc' is not a whole number",
        f"CommandError: {DATA / 'invalid_request_window_abc.xml'}: 1 problem(s); nothing was "
        "changed.",
    ]
    assert result.stdout == ""
