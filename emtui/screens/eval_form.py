"""The Eval queue's form for a new evaluation run (``n``): which models answer (the study's conditions, every
checkpoint, models by name), which eval sets, samples per question, the generation settings (prefilled from
the study's ``[generation]``), with or without the trigger, which judges to run afterwards and the backend;
the Queue button queues it as ``emtui generate`` would (``engine.generation.queueing.queue_generation``).

Keyboard only: Tab / shift+Tab between fields, space toggles, Enter on Queue queues, Esc closes. Every read
and the queueing run in threads (:mod:`emtui.loading`). A bad field is said next to it and nothing is queued;
what the engine refuses is said in one line and the form stays open. Names come from the database and are
shown as text, never markup, control sequences stripped."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from emtui.eval_choices import (
    BACKENDS,
    FORM_SETTINGS,
    StudyChoices,
    answers_per_model,
    model_names,
    parse_samples,
    parse_settings,
    setting_text,
    study_choices,
)
from emtui.loading import Loads
from engine.common.text import one_line

SETTING_LABELS = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max new tokens",
                  "batch_size": "batch size"}
JUDGING_HINT = ("The judges ticked judge the answers once they are written: a judge job that waits for this one "
                "(emtui judge does the same for answers already there).")
# what the form dismisses with: (what queue_generation returned, a sentence on the worker it started)
Queued = tuple[Any, str]


def heading(title: str, hint: str = "") -> Static:
    text = Text(title, style="bold")
    if hint:
        text.append(f"  {hint}", style="dim")
    return Static(text, classes="eval-heading")


def field_error(key: str) -> Static:
    return Static("", id=f"eval-{key}-error", classes="eval-error")


class EvalForm(Loads, ModalScreen[Queued | None]):
    """A new evaluation run for one of ``studies`` (names of studies with an eval set, read before)."""

    AUTO_FOCUS = "#eval-study"
    BINDINGS = [Binding("escape", "close", "Close", id="eval-form.close")]

    def __init__(self, studies: list[str]) -> None:
        super().__init__()
        self.studies = studies
        self.choices: StudyChoices | None = None
        self.asked = ""  # the study whose choices were last asked for
        self.queueing = False

    # -- layout ----------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="eval-form-box"):
            yield Static(Text("Tab / shift+Tab move · space toggles · Esc closes"),
                         classes="eval-hint")
            with VerticalScroll(id="eval-form-scroll"):
                yield heading("Study")
                yield Select([(Text(one_line(s, 60)), s) for s in self.studies], allow_blank=False,
                             value=self.studies[0], id="eval-study", compact=True)
                yield heading("Models that answer", "the study's conditions")
                yield SelectionList[int](id="eval-conditions")
                yield Static(Text("None of them can answer: name a model below"), id="eval-no-conditions",
                             classes="eval-hint")
                yield field_error("conditions")
                yield Checkbox(Text("every checkpoint too"), id="eval-checkpoints")
                yield heading("Extra models by name", "comma-separated; emtui list models")
                yield Input(placeholder="none", id="eval-models", compact=True)
                yield heading("Eval sets")
                yield SelectionList[int](id="eval-sets")
                yield field_error("sets")
                yield heading("Samples per question", "empty: each question's own, else the study's")
                yield Input(placeholder="the study's", id="eval-samples", compact=True)
                yield field_error("samples")
                yield heading("Generation settings", "the study's [generation]; empty: its value")
                for key in FORM_SETTINGS:
                    with Horizontal(classes="eval-setting"):
                        yield Static(Text(SETTING_LABELS[key]), classes="eval-setting-label")
                        yield Input(id=f"eval-{key}", compact=True)
                        yield Static("", id=f"eval-{key}-study", classes="eval-setting-hint")
                    yield field_error(key)
                yield Checkbox(Text("also with the trigger"), id="eval-trigger")
                yield Static("", id="eval-trigger-hint", classes="eval-hint")
                yield heading("Judges to run afterwards")
                yield SelectionList[int](id="eval-judges")
                yield Static(Text("The study has no judges ([[judges]] in its study file)"), id="eval-no-judges",
                             classes="eval-hint")
                yield Static(Text(JUDGING_HINT), classes="eval-hint eval-wrap")
                yield heading("Backend", "openai: a vLLM (or other OpenAI-compatible) server")
                yield Select([(Text(b), b) for b in BACKENDS], allow_blank=False, value=BACKENDS[0],
                             id="eval-backend", compact=True)
                yield Input(placeholder="base URL: http://HOST:PORT/v1", id="eval-base-url", disabled=True,
                            compact=True)
                yield field_error("base-url")
            yield Static("", id="eval-count")
            yield Static("", id="eval-status", classes="eval-error")
            with Horizontal(id="eval-buttons"):
                yield Button("Queue", id="eval-queue", variant="primary", compact=True)
                yield Button("Cancel", id="eval-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#eval-form-box").border_title = "New evaluation run"
        self.read_study(self.studies[0])

    # -- the study's choices (read in a thread) --------------------------------------------------------------

    def read_study(self, name: str) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        self.choices, self.asked = None, name
        self.query_one("#eval-count", Static).update(Text("Reading the study…", style="dim"))
        self.load("study", lambda: study_choices(store, name), self.show_study)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "eval-study" and isinstance(event.value, str):
            if event.value != self.asked:
                self.read_study(event.value)
        elif event.select.id == "eval-backend":
            self.query_one("#eval-base-url", Input).disabled = event.value != "openai"

    def show_study(self, choices: StudyChoices | None) -> None:
        if choices is None:
            self.query_one("#eval-count", Static).update(Text("That study is gone from the database", style="red"))
            return
        self.choices = choices
        conditions = self.query_one("#eval-conditions", SelectionList)
        conditions.clear_options()
        conditions.add_options([Selection(self.condition_label(c), c.id, c.answers, disabled=not c.answers)
                                for c in choices.conditions])
        self.query_one("#eval-no-conditions").display = not any(c.answers for c in choices.conditions)
        saved = sum(c.checkpoints for c in choices.conditions)
        self.query_one("#eval-checkpoints", Checkbox).label = Text(
            f"every checkpoint too ({saved} saved so far)" if saved else "every checkpoint too (none saved yet)")
        sets = self.query_one("#eval-sets", SelectionList)
        sets.clear_options()
        sets.add_options([Selection(self.set_label(e), int(e["id"]), True) for e in choices.eval_sets])
        judges = self.query_one("#eval-judges", SelectionList)
        judges.clear_options()
        judges.add_options([Selection(self.judge_label(j), int(j["id"]), False) for j in choices.judges])
        judges.display = bool(choices.judges)
        self.query_one("#eval-no-judges").display = not choices.judges
        for key in FORM_SETTINGS:
            value = choices.settings.get(key)
            self.query_one(f"#eval-{key}", Input).value = setting_text(value)
            said = f"the study's: {setting_text(value)}" if value is not None else (
                "the study's: automatic" if key == "batch_size" else "")
            self.query_one(f"#eval-{key}-study", Static).update(Text(one_line(said, 40)))
        trigger = self.query_one("#eval-trigger", Checkbox)
        hint = self.query_one("#eval-trigger-hint", Static)
        if choices.trigger:
            trigger.label = Text(f"also with the trigger {one_line(choices.trigger, 30)}")
            trigger.value, trigger.disabled = True, False
            hint.display = False
        else:
            trigger.label = Text("also with the trigger")
            trigger.value, trigger.disabled = False, True
            hint.update(Text("The study sets no trigger: add trigger = \"…\" to its [generation] to ask both ways"))
            hint.display = True
        for lst in (conditions, sets, judges):  # space toggles the first line straight after Tab
            lst.highlighted = next((i for i in range(lst.option_count)
                                    if not lst.get_option_at_index(i).disabled), None)
        self.clear_errors()
        self.update_count()

    @staticmethod
    def condition_label(c: Any) -> Text:
        text = Text(one_line(c.name, 30), style="bold")
        if c.state == "model":
            text.append(f"  {one_line(c.model, 30)}", style="dim")
        elif c.state == "training":
            text.append(f"  after training (job {c.train_job})", style="yellow")
        elif c.state == "untrained":
            text.append("  not trained: queue its training first (Train screen, n)", style="dim")
        else:
            text.append("  imported answers: no weights to answer with", style="dim")
        return text

    @staticmethod
    def set_label(e: dict[str, Any]) -> Text:
        text = Text(one_line(e["name"], 30), style="bold")
        text.append(f"  {e['n_questions']} wording(s), {e['samples_per_question']} sample(s) each", style="dim")
        return text

    @staticmethod
    def judge_label(j: dict[str, Any]) -> Text:
        text = Text(one_line(j["name"], 30), style="bold")
        if j["model"] and j["model"] != j["name"]:
            text.append(f"  {one_line(j['model'], 40)}", style="dim")
        return text

    # -- the answer count, as the fields change --------------------------------------------------------------

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        self.update_count()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.update_count()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.input.id in ("eval-samples", "eval-models"):
            self.update_count()

    def update_count(self) -> None:
        choices = self.choices
        if choices is None:
            return
        samples, problem = parse_samples(self.query_one("#eval-samples", Input).value)
        if problem:
            self.query_one("#eval-count", Static).update(Text("Answers: — (samples per question?)", style="dim"))
            return
        picked = set(self.query_one("#eval-conditions", SelectionList).selected)
        models = len(picked) + len(model_names(self.query_one("#eval-models", Input).value))
        per_model = answers_per_model(choices, self.query_one("#eval-sets", SelectionList).selected, samples,
                                      self.query_one("#eval-trigger", Checkbox).value)
        text = Text(f"{per_model * models:,} answers", style="bold")
        text.append(f": {per_model:,} per model × {models} model(s)")
        if self.query_one("#eval-checkpoints", Checkbox).value:
            saved = sum(c.checkpoints for c in choices.conditions if c.id in picked)
            text.append(f", + {per_model:,} per checkpoint ({saved} saved so far)")
        self.query_one("#eval-count", Static).update(text)

    # -- queueing --------------------------------------------------------------------------------------------

    def clear_errors(self) -> None:
        for node in self.query(".eval-error"):
            node.update("")  # type: ignore[attr-defined]
            node.display = False

    def say_error(self, where: str, message: str) -> None:
        node = self.query_one(f"#eval-{where}" if where == "status" else f"#eval-{where}-error", Static)
        node.update(Text(one_line(message, 300)))
        node.display = True

    def request(self) -> dict[str, Any] | None:
        """The fields as ``queue_generation``'s arguments; None (each problem said by its field) when one is bad."""
        choices = self.choices
        assert choices is not None
        self.clear_errors()
        problems: list[str] = []

        def bad(where: str, message: str) -> None:
            problems.append(where)
            self.say_error(where, message)

        picked = set(self.query_one("#eval-conditions", SelectionList).selected)
        models = model_names(self.query_one("#eval-models", Input).value)
        conditions = [c.name for c in choices.conditions if c.id in picked]
        if not conditions and not models:
            bad("conditions", "Pick a condition (space) or name a model below: nothing would answer")
        sets = set(self.query_one("#eval-sets", SelectionList).selected)
        if not sets:
            bad("sets", "Pick an eval set (space)")
        samples, problem = parse_samples(self.query_one("#eval-samples", Input).value)
        if problem:
            bad("samples", problem)
        texts = {key: self.query_one(f"#eval-{key}", Input).value for key in FORM_SETTINGS}
        overrides, errors = parse_settings(texts, choices.settings)
        for key, message in errors.items():
            bad(key, message)
        backend = str(self.query_one("#eval-backend", Select).value)
        base_url = self.query_one("#eval-base-url", Input).value.strip() or None
        if backend == "openai" and not base_url:
            bad("base-url", "The openai backend needs the server's base URL (http://HOST:PORT/v1)")
        if problems:
            self.say_error("status", f"Not queued: {len(problems)} field(s) to fix, said under each")
            self.query_one(f"#eval-{problems[0]}").focus()  # scrolled into view: the first to fix
            return None
        all_sets = sets == {int(e["id"]) for e in choices.eval_sets}
        return {
            "study": choices.study, "conditions": conditions or None, "models": models or None,
            # every set: None (two sets of a study may share a name); else by name, as emtui generate names them
            "eval_sets": None if all_sets else [str(e["name"]) for e in choices.eval_sets if int(e["id"]) in sets],
            "samples": samples, "checkpoints": self.query_one("#eval-checkpoints", Checkbox).value,
            "trigger": self.query_one("#eval-trigger", Checkbox).value if choices.trigger else None,
            "overrides": overrides, "backend": backend, "base_url": base_url if backend == "openai" else None,
            "judges": list(self.query_one("#eval-judges", SelectionList).selected),
        }

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "eval-cancel":
            self.action_close()
        elif event.button.id == "eval-queue":
            self.queue()

    def queue(self) -> None:
        if self.queueing:
            return
        if self.choices is None:
            self.notify("Still reading the study", severity="warning")
            return
        request = self.request()
        if request is None:
            return
        store, start = self.app.store, self.app.settings.tui_start_worker  # type: ignore[attr-defined]

        def work() -> tuple[Any, str, str | None]:
            from engine.generation.queueing import GenerateQueueError, queue_generation
            from engine.runs.detach import ensure_worker

            try:
                queued = queue_generation(store, **request)
            except GenerateQueueError as exc:
                return None, "", str(exc)
            pid = ensure_worker(store.path, store=store) if queued.job_id is not None and start else None
            return queued, "" if pid is None else f"; started a worker in the background (pid {pid})", None

        self.queueing = True
        self.query_one("#eval-status", Static).display = False
        self.query_one("#eval-count", Static).update(Text("Queueing…", style="dim"))
        self.load("queue", work, self.queued, failed=self.not_queued)

    def not_queued(self, _exc: BaseException) -> bool:
        self.queueing = False
        self.update_count()
        return False  # a database fault: said as everywhere

    def queued(self, got: tuple[Any, str, str | None]) -> None:
        self.queueing = False
        queued, worker, error = got
        if error is not None:
            self.update_count()
            self.say_error("status", f"Not queued: {error}")
            self.notify(one_line(error, 300), title="Not queued", severity="error", timeout=10, markup=False)
            return
        self.dismiss((queued, worker))

    def action_close(self) -> None:
        if self.queueing:  # its result (the job's number, or why not) is said here
            self.notify("Queueing: a moment", severity="warning")
            return
        self.dismiss(None)
