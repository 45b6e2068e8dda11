"""The demo sandbox as the command-line tests use it: one builder, not one per file."""

from __future__ import annotations

from pathlib import Path

from integrity.demo import build_sandbox


def cli_host(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """The demo sandbox, the common arguments that point at it, and their (empty) config
    file: (root, arguments, config)."""
    root, profiles = build_sandbox(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("")
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(config)]  # fmt: skip
    return root, args, config
