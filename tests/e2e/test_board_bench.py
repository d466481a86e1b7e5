"""The board benchmark in quick form (`taskservice bench-board --quick` has the same shape): a board
over thousands of tasks opens as fast as one over a hundred, keeps few card nodes, shows the exact
count, and shows another client's create within a second."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from taskservice.bench import board, fill
from tests.e2e.conftest import need
from tests.servers import ROOT

pytestmark = pytest.mark.browser

SMALL, LARGE = 100, 5_000


@pytest.mark.timeout(600)  # fills a 5,000-task database on the first run, then ~12 navigations
def test_the_board_over_thousands_of_tasks_opens_fast_with_few_nodes_and_stays_live(tmp_path: Path) -> None:
    need(board.chromium_path() is not None, "no Chromium found (apt-get install chromium)")
    need((ROOT / "web" / "dist" / "index.html").is_file(), "the board is not built (needs Node.js: make web)")
    cache = ROOT / ".bench-cache"
    small, large = board.measure([SMALL, LARGE], cache, print, workdir=tmp_path)

    with sqlite3.connect(fill.filled_database(cache, LARGE)) as conn:
        todo = conn.execute("SELECT count(*) FROM tasks WHERE status = 1").fetchone()[0]
    assert large.first_column_total == todo  # the exact count of a column far longer than its page
    for figures in (small, large):
        assert figures.card_nodes <= 500, figures
        assert figures.live_delay_s < 1.0, figures
        assert figures.first_column_s < 1.5, figures
    assert large.loaded_cards > 500  # scrolled well past what the DOM holds
    assert large.first_column_s <= 2 * small.first_column_s, (small, large)
