"""The README's "From curl" examples, run as written against a live server that requires tokens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT, ServerProcess

README_URL = "http://127.0.0.1:8080"


def curl_section() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From curl", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's From curl section has no sh code block"
    return match.group(1)


def test_every_curl_example_in_the_readme_works(tmp_path: Path) -> None:
    script = curl_section()
    assert script.count("curl ") >= 8
    proc = ServerProcess.jwt(tmp_path / "readme").start()
    try:
        bin_dir = str(Path(sys.executable).parent)
        runnable = script.replace(README_URL, proc.http_url).replace(".venv/bin/", bin_dir + "/")
        env = {**os.environ, "TASKSERVICE_DATA_DIR": str(proc.data_dir)}
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", runnable],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        out = run.stdout
        assert '"title":"Write the docs"' in out and '"status":"TASK_STATUS_DONE"' in out
        assert '"successCount":2' in out
        assert "\ndata: {" in out and "id: " in out  # the watch's events
    finally:
        proc.stop()
