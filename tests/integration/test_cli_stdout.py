"""``qt`` with a stdout that is closed or cannot be written: no traceback, no lost result.

These start the real program (``python -m bot.cli``): a closed stdout is seen at import, before
any in-process runner could stand in for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _qt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env["QT__APP__DATA_DIR"] = str(tmp_path / "ud")
    return subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),  # `qt ... >&-`: Python then sets sys.stdout to None
        check=False,
    )


def test_a_command_runs_with_stdout_closed(tmp_path: Path) -> None:
    result = _qt(tmp_path, "data", "list")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "ud" / "quantum_trader.sqlite").is_file()  # it ran, not just imported
