"""Key bindings: every binding has an id, and a keymap file can remap it.

The keymap file is TOML, ``binding-id = "key[,key]"``, e.g. ``"app.results" = "r"``.
It lives where the ``keymap`` setting says (:mod:`engine.settings`): ``$EMTUI_KEYMAP``, the config
file's ``keymap``, or ``$XDG_CONFIG_HOME/emtui/keymap.toml`` (``~/.config/emtui/keymap.toml``).
``emtui keys`` lists every id.
"""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding


class KeymapError(ValueError):
    """A keymap file that cannot be used; the message names the file and the key."""


def keymap_path() -> Path:
    """The keymap file as the settings (environment, config file) say."""
    from engine.settings import load_settings

    return load_settings().keymap_file()


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Read the keymap file (absent file: empty keymap). Unknown ids are errors, so typos show."""
    from engine.common.safe_load import LoadError
    from engine.common.untrusted import parse_toml, read_text

    path = path or keymap_path()
    if not path.exists():
        return {}
    try:  # bounded like every file emtui reads: a pipe, a 5,000-deep array or a huge file is one line
        doc = parse_toml(read_text(path, limit=1 << 20))
    except LoadError as exc:
        raise KeymapError(f"{path}: {exc}") from None
    keymap = doc.get("keys", doc)
    if not isinstance(keymap, dict):
        raise KeymapError(f"{path}: keys: must be a table of binding-id = \"key[,key]\"")
    known = {binding_id for _, binding_id, _, _ in all_bindings()}
    for binding_id, keys in keymap.items():
        if binding_id not in known:
            raise KeymapError(f"{path}: {binding_id}: unknown binding id (see 'emtui keys')")
        if not isinstance(keys, str) or not keys.strip():
            raise KeymapError(f"{path}: {binding_id}: keys must be a string like \"r\" or \"ctrl+r,f5\"")
    return dict(keymap)


KEY_NAMES = {"question_mark": "?", "escape": "Esc", "enter": "Enter", "backspace": "Backspace",
             "left_square_bracket": "[", "right_square_bracket": "]"}


def key_label(keys: str) -> str:
    """How a binding's keys are shown to a person (``question_mark`` -> ``?``)."""
    return ",".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def binding_rows(area: str, bindings: list) -> list[tuple[str, str, str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.id:
            rows.append((area, b.id, b.key, b.description or b.action))
    return rows


def all_bindings() -> list[tuple[str, str, str, str]]:
    """(area, id, default key, description) for every binding of the app, its screens and widgets."""
    from emtui.app import AREAS, EmtuiApp
    from emtui.screens.answers import AnswerScreen, AnswersScreen
    from emtui.screens.base import AreaScreen
    from emtui.screens.help import HelpScreen
    from emtui.widgets.paged_table import PagedTable

    rows = (binding_rows("app", EmtuiApp.BINDINGS) + binding_rows("screen", AreaScreen.BINDINGS)
            + binding_rows("table", PagedTable.BINDINGS))
    for area in AREAS:
        rows += binding_rows(area.name, area.screen.BINDINGS)
    rows += binding_rows("answers", AnswersScreen.BINDINGS) + binding_rows("answer", AnswerScreen.BINDINGS)
    rows += binding_rows("help", HelpScreen.BINDINGS)
    from emtui.screens.fulltext import FullTextScreen

    rows += binding_rows("fulltext", FullTextScreen.BINDINGS)
    from emtui.screens.train_pickers import CheckpointList, QueuePicker

    rows += binding_rows("train", QueuePicker.BINDINGS) + binding_rows("train", CheckpointList.BINDINGS)
    from emtui.screens.eval_form import EvalForm
    from emtui.screens.job_answers import JobAnswersScreen

    rows += binding_rows("eval-form", EvalForm.BINDINGS) + binding_rows("job-answers", JobAnswersScreen.BINDINGS)
    from emtui.screens.adjudicate import AdjudicationScreen
    from emtui.screens.rate import AnnotatorNameScreen, GuidelinesScreen, NoteScreen, RatingScreen

    rows += binding_rows("rate", RatingScreen.BINDINGS) + binding_rows("note", NoteScreen.BINDINGS)
    rows += binding_rows("guidelines", GuidelinesScreen.BINDINGS)
    rows += binding_rows("annotator", AnnotatorNameScreen.BINDINGS)
    rows += binding_rows("adjudicate", AdjudicationScreen.BINDINGS)
    from emtui.screens.study_run_confirm import ConfirmRun

    rows += binding_rows("run-study", ConfirmRun.BINDINGS)
    from emtui.room import RoomCampaignsScreen, RoomKeysScreen  # emtui annotate's closed room

    rows += binding_rows("room", RoomCampaignsScreen.BINDINGS) + binding_rows("room-keys", RoomKeysScreen.BINDINGS)
    return rows
