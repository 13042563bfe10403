"""A key file readable (or writable) by group or others is refused with exit 2 and the chmod to run (issue 14);
``security.allow_readable_key_files: true`` accepts it, for mounts whose modes the operator does not set."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.cli import run_cli
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.settings import load_settings

PEM = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def _config(directory: Path, *, amplify_key: str, recurly_key: str, allow: bool | None = None) -> Path:
    security = "" if allow is None else f"security:\n  allow_readable_key_files: {str(allow).lower()}\n"
    path = directory / "config.yaml"
    path.write_text(
        "amplify:\n"
        "  tenant_id: '100000000000001'\n"
        "  client_id: client\n"
        f"  private_key_file: {amplify_key}\n"
        "recurly:\n"
        f"  api_key_file: {recurly_key}\n" + security
    )
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    amplify, recurly = tmp_path / "amplify key.pem", tmp_path / "recurly-key"
    amplify.write_text(PEM)
    recurly.write_text("rk-0123456789\n")
    amplify.chmod(0o600)
    recurly.chmod(0o600)
    return amplify, recurly


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_open_to_others_is_refused_with_the_chmod_to_run(
    mode: int, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    amplify, recurly = keys
    amplify.chmod(mode)
    path = _config(tmp_path, amplify_key=f"'{amplify.name}'", recurly_key=recurly.name)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})
    assert raised.value.exit_code == ExitCode.CONFIG
    assert str(raised.value) == (
        f"{path}:4: amplify.private_key_file: {amplify} is readable or writable by group or others "
        f"(mode {mode:04o}) and holds a credential; run `chmod 600 {shlex.quote(str(amplify))}`, or set "
        "security.allow_readable_key_files: true where the mode is not yours to set (a Kubernetes secret is "
        "mounted 0644 by default)"
    )


def test_a_private_key_file_or_an_allowed_one_is_accepted(keys: tuple[Path, Path], tmp_path: Path) -> None:
    amplify, recurly = keys
    path = _config(tmp_path, amplify_key=f"'{amplify.name}'", recurly_key=recurly.name)
    assert load_settings(path, {}).recurly.api_key.reveal() == "rk-0123456789"
    amplify.chmod(0o644)
    recurly.chmod(0o644)
    path = _config(tmp_path, amplify_key=f"'{amplify.name}'", recurly_key=recurly.name, allow=True)
    assert load_settings(path, {}).security.allow_readable_key_files is True


def test_the_command_line_refuses_a_readable_api_key_file_with_exit_2(
    keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    amplify, recurly = keys
    recurly.chmod(0o644)
    path = _config(tmp_path, amplify_key=f"'{amplify.name}'", recurly_key=recurly.name)
    monkeypatch.chdir(tmp_path)
    assert run_cli(["--config", str(path), "config", "check", "--offline"]) == ExitCode.CONFIG
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"Error: {path}:6: recurly.api_key_file: {recurly} is readable")
    assert f"run `chmod 600 {recurly}`" in line and "security.allow_readable_key_files: true" in line
