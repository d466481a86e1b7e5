"""`taskctl webhook create|list|deliveries|delete` against a live server and a real receiver."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.servers import TASKSERVICE, ServerProcess
from tests.test_taskctl import json_lines, taskctl
from tests.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("taskctl-hooks"), "--webhook-allow-private").start()
    yield proc
    proc.stop()


def test_webhook_commands(server: ServerProcess) -> None:
    receiver = Receiver()
    try:
        created = taskctl(server, "webhook", "create", receiver.url, "-s", "done", "-l", "ci", "-d", "CI bot")
        assert created.exit_code == 0, created.stderr
        assert "secret (shown once): whsec_" in created.stdout

        (hook,) = json_lines(taskctl(server, "-o", "json", "webhook", "list"))
        assert (
            hook["url"] == receiver.url
            and hook["labels"] == ["ci"]
            and hook["statuses"] == ["TASK_STATUS_DONE"]
        )
        assert "secret" not in hook
        receiver.secrets.append(created.stdout.rsplit("secret (shown once): ", 1)[1].strip())

        task = json_lines(taskctl(server, "-o", "json", "create", "ship it", "-l", "ci"))[0]
        assert taskctl(server, "update", task["id"], "-s", "done").exit_code == 0
        receiver.wait_for(1)
        time.sleep(0.5)  # the cursor and the attempt are stored a moment after the POST
        (delivery,) = json_lines(taskctl(server, "-o", "json", "webhook", "deliveries", hook["id"]))
        assert delivery["success"] and delivery["httpStatus"] == 200
        table = taskctl(server, "webhook", "deliveries", hook["id"])
        assert "ok" in table.stdout and "200" in table.stdout
        assert receiver.accepted[0].verified_by
        stats = subprocess.run(
            [TASKSERVICE, "stats", "--server", server.http_url, "--interval", "0"],
            capture_output=True,
            text=True,
            timeout=30,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
        assert "webhooks delivering: 1" in stats.stdout and "success 1" in stats.stdout, stats.stdout

        assert taskctl(server, "webhook", "delete", hook["id"]).exit_code == 0
        assert json_lines(taskctl(server, "-o", "json", "webhook", "list")) == []
        missing = taskctl(server, "webhook", "delete", hook["id"])
        assert missing.exit_code != 0 and "NOT_FOUND" in missing.stderr
    finally:
        receiver.close()
