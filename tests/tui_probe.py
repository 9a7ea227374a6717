"""Probe (a script, not a test module): open the TUI headless on an existing database,
visit every area by its key and the help screen, then print as JSON which heavy ML
libraries ended up in ``sys.modules``.

    python tests/tui_probe.py DB_PATH

Run in a fresh interpreter by tests/test_layering.py; prints one JSON object:
``{"visited": [screen class names], "help": bool, "heavy": [module names]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes")


async def probe(db_path: str) -> dict:
    import db
    from emtui.app import AREAS, create_app
    from emtui.screens.help import HelpScreen

    store = db.open_store(db_path, create=False)
    visited: list[str] = []
    saw_help = False
    try:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for area in AREAS:
                await pilot.press(area.key)
                await pilot.pause()
                if type(app.screen) is area.screen:
                    visited.append(area.screen.__name__)
            await pilot.press("question_mark")
            await pilot.pause()
            saw_help = isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.pause()
    finally:
        store.close()
    return {"visited": visited, "help": saw_help,
            "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: tui_probe.py DB_PATH", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(probe(sys.argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
