"""Blind rating: one annotator, one campaign, one item at a time, keyboard only.

What is on screen comes from :class:`engine.annotation.session.ItemView` and nothing else: the item's
opaque code, the rater's own count, the question and the answer (or the two answers of a
pairwise item) — never the model, condition, checkpoint, judge scores, other raters' ratings
or the campaign's name (which a lead may have named after the conditions). Untrusted text is
shown as plain text, never as markup.

Keys: digits type the score, Enter confirms (and the next item appears at once), Backspace
deletes a digit (on an empty entry it reopens the last rating), ``u`` undo / edit the last
ratings (up to 10 back), ``s`` skip, ``f`` flag for review, ``n`` a note, ``?`` the
guidelines, Esc leaves (an edit: leaves it unchanged). Every key counts as activity: active
time excludes pauses over 2 minutes; the item's lease is renewed while one works on it.

The session's reads and writes (the next item, a rating, a skip, an undo) run in a thread
(:mod:`emtui.loading`); keys pressed meanwhile wait and are taken in order once it is back, as they
were when the screen waited itself — but the screen goes on drawing. The lease renewal a key may
bring (one UPDATE, at most every 30 s) stays on the UI thread.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static

from emtui.faults import fault_line
from emtui.loading import Loads
from emtui.screens.base import shown_text
from engine.common.text import flat, strip_control
from engine.settings import Settings

A = TypeVar("A", bound=Callable[..., Any])


def digit_bindings(prefix: str) -> list[Binding]:
    """0-9 typing a value (hidden from the footer: the entry line says what to type)."""
    return [Binding(str(d), f"digit('{d}')", f"Type {d}", show=False, priority=True, id=f"{prefix}.digit-{d}")
            for d in range(10)]


def plain(value: Any, style: str = "") -> Text:
    return Text(strip_control("" if value is None else str(value)), style=style)


def answer_text(value: Any) -> Text:
    """An answer to rate, as plain text; an empty one (or only spaces) says so, so that a blank box is never
    taken for one still loading; a very long one is shown in part and says so (:func:`shown_text`)."""
    text = shown_text(value, hint=" f flags it for review.")
    if not text.plain.strip():
        return Text("(an empty answer)" if not text.plain else "(an answer of only spaces or line breaks)",
                    style="dim italic")
    return text


def in_turn(action: A) -> A:
    """A key's action that waits while the session works in a thread, then runs in the order pressed."""

    @functools.wraps(action)
    def run(self: RatingScreen, *args: Any) -> Any:
        if self.busy or self.deferred:
            self.deferred.append((action, args))
            return None
        return action(self, *args)

    return run  # type: ignore[return-value]


class RatingScreen(Loads, Screen):
    """Rate a campaign's items as ``session``'s annotator (an :class:`engine.annotation.session.AnnotationSession`)."""

    BINDINGS = [
        *digit_bindings("rate"),
        Binding("enter", "confirm", "Confirm", priority=True, id="rate.confirm"),
        Binding("backspace", "backspace", "Delete / undo", key_display="⌫", show=False, priority=True,
                id="rate.backspace"),
        Binding("u", "undo", "Undo", id="rate.undo"),
        Binding("s", "skip", "Skip", id="rate.skip"),
        Binding("f", "flag", "Flag", id="rate.flag"),
        Binding("n", "note", "Note", id="rate.note"),
        Binding("question_mark", "guidelines", "Guidelines", key_display="?", priority=True, id="rate.guidelines"),
        Binding("escape", "back", "Back", id="rate.back"),
    ]
    AUTO_FOCUS = "#rate-answer"

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.view: Any = None
        self.typed: list[str] = []  # one entry per metric of the scale: the digits typed so far
        self.message: Text | None = None
        self.flagged = False
        self.note: str | None = None
        # flag and note set on the held item, by code: an undo / edit in between must not lose them
        self.marks: dict[str, tuple[bool, str | None]] = {}
        self.fault: str | None = None  # the next item could not be loaded (a database fault): Enter tries again
        self.busy = False  # the session works in a thread: keys wait (deferred) until it is back
        self.deferred: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    def compose(self) -> ComposeResult:
        yield Static(id="rate-status")
        with Vertical(id="rate-body"):
            with VerticalScroll(id="rate-question", classes="rate-box"):  # a long question scrolls (Tab to it)
                yield Static(id="rate-question-text")
            with VerticalScroll(id="rate-answer", classes="rate-box"):
                yield Static(id="rate-answer-text")
            with Horizontal(id="rate-pair"):
                with VerticalScroll(id="rate-left", classes="rate-box"):
                    yield Static(id="rate-left-text")
                with VerticalScroll(id="rate-right", classes="rate-box"):
                    yield Static(id="rate-right-text")
        yield Static(id="rate-entry")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self not in self.app.screen_stack:  # left (Esc typed ahead) before it was shown: claim nothing
            return
        self.next_item()

    # -- items ------------------------------------------------------------------------------------

    def in_session(self, work: Callable[[], Any], then: Callable[[Any], None],
                   failed: Callable[[Exception], bool] | None = None) -> None:
        """``work()`` (the session's reads and writes) in a thread, then ``then(result)`` here; ``failed(exc)``
        says an exception (True) — what it does not say is raised. Keys pressed meanwhile wait their turn."""
        self.busy = True

        def done(value: Any) -> None:
            self.busy = False
            then(value)
            self.take_deferred()

        def fail(exc: BaseException) -> bool:
            self.busy = False
            said = isinstance(exc, Exception) and failed is not None and failed(exc)
            if not said:
                raise exc
            self.take_deferred()
            return True

        self.load("session", work, done, failed=fail)

    def take_deferred(self) -> None:
        """The keys pressed while the session worked, in order (until one sets it working again)."""
        while self.deferred and not self.busy and self.is_attached:
            action, args = self.deferred.popleft()
            action(self, *args)

    def next_item(self, message: Text | str | None = None) -> None:
        """The next item (read in a thread); a database fault is said on screen (Enter tries again)."""
        session = self.session

        def work() -> tuple[Any, Text | None]:
            view = session.next_item()
            return view, (None if view is not None else self.done_text())

        def fault(exc: Exception) -> bool:
            line = fault_line(exc, self.app.store.path)  # type: ignore[attr-defined]
            if line is None:
                return False
            self.show_fault(line, message)
            return True

        self.in_session(work, lambda got: self.show(got[0], message, done=got[1]), fault)

    def show_fault(self, line: str, message: Text | str | None) -> None:
        """No item on screen: the database could not give the next one (locked, read-only, the file gone)."""
        self.view, self.fault = None, line
        for box in ("#rate-answer", "#rate-pair", "#rate-question"):
            self.query_one(box).display = False
        status = Text("The next item could not be loaded", style="bold red")
        status.append(" · Enter: try again · Esc: campaigns", style="dim")  # first: a long error may be cut below
        self.query_one("#rate-status", Static).update(status)
        text = Text()
        if message is not None:
            text.append_text(Text(message) if isinstance(message, str) else message)
            text.append("\n")
        text.append(line, style="bold red")
        self.query_one("#rate-entry", Static).update(text)

    def said(self, exc: Exception, before: str = "") -> bool:
        """Say a database fault on the entry line (True); False for any other exception."""
        line = fault_line(exc, self.app.store.path)  # type: ignore[attr-defined]
        if line is None:
            return False
        self.say(before + line)
        return True

    def activity(self) -> None:
        """A key: active time, and now and then the lease renewed — which may wait for a locked database; the
        next key (or the rating) tries again, and a rating says what went wrong."""
        try:
            self.session.touch()
        except Exception as exc:
            if fault_line(exc, self.app.store.path) is None:  # type: ignore[attr-defined]
                raise

    def show(self, view: Any, message: Text | str | None = None, *, done: Text | None = None) -> None:
        self.view = view
        self.fault = None
        self.typed = [""]
        self.flagged = bool(view and view.flagged)
        self.note = view.note if view else None
        if view is not None and not view.editing and view.code in self.marks:
            self.flagged, self.note = self.marks[view.code]
        self.message = Text(message) if isinstance(message, str) else message
        pairwise = bool(view and view.left is not None)
        self.query_one("#rate-answer").display = bool(view) and not pairwise
        self.query_one("#rate-pair").display = pairwise
        self.query_one("#rate-question").display = bool(view)
        if view is None:
            # the status line says it; the entry lines (which wrap) the rater's counts, under what was said
            self.query_one("#rate-status", Static).update(
                Text("Nothing left for you to rate in this campaign. Thank you!", style="bold"))
            entry = Text()
            if self.message is not None:
                entry.append_text(self.message)
                entry.append("\n")
            if done is not None:
                entry.append_text(done)
            self.query_one("#rate-entry", Static).update(entry)
            return
        question = Text()
        if view.system_prompt:
            question.append("System: ", style="dim")
            question.append_text(plain(view.system_prompt, "dim"))
            question.append("\n")
        question.append_text(plain(view.question))
        self.query_one("#rate-question-text", Static).update(question)
        box = self.query_one("#rate-question")
        box.border_title = "Question"
        box.border_subtitle = ""
        box.scroll_home(animate=False)
        self.call_after_refresh(self.mark_long_question)
        if pairwise:
            for side, key, text in (("left", "1", view.left), ("right", "2", view.right)):
                self.query_one(f"#rate-{side}-text", Static).update(answer_text(text))
                scroll = self.query_one(f"#rate-{side}")
                scroll.border_title = f"{key} · {side} answer"
                scroll.scroll_home(animate=False)
            self.query_one("#rate-left").focus()
        else:
            self.query_one("#rate-answer-text", Static).update(answer_text(view.answer))
            scroll = self.query_one("#rate-answer")
            scroll.border_title = "Answer"
            scroll.border_subtitle = "↑ ↓ PgUp PgDn scroll"
            scroll.scroll_home(animate=False)
            scroll.focus()
        self.show_status()
        self.show_entry()

    def mark_long_question(self) -> None:
        """A question taller than its box says how to read the rest."""
        if not self.is_mounted or self not in self.app.screen_stack:  # left before this ran
            return
        box = self.query_one("#rate-question")
        if not (box.display and box.max_scroll_y > 0):
            box.border_subtitle = ""
        else:
            box.border_subtitle = "more: Tab to it, ↑ ↓" if self.focused is not box else "↑ ↓ scroll · Tab: the answer"

    def on_descendant_focus(self) -> None:
        self.mark_long_question()

    def on_resize(self) -> None:  # the box's height, and so whether the question fits, changed
        self.call_after_refresh(self.mark_long_question)

    def done_text(self) -> Text:
        """What the rater has done (read in the session's thread: it asks the database)."""
        p = self.session.progress()
        text = Text(f"You rated {p['mine_done']} item(s) and skipped {p['mine_skipped']}. ")
        text.append("Esc: back to the campaigns.", style="dim")
        return text

    def show_status(self) -> None:
        view = self.view
        if view is None:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        if view.editing:
            text.append("Editing ", style="bold reverse")
            text.append(" your rating of ")
        text.append(f"Item {flat(view.code)}", style="bold")
        text.append(f"  {view.number}" + (f" of {view.total}" if view.total else ""), style="dim")
        if view.resumed:
            text.append("  (where you stopped)", style="dim")
        if self.flagged:
            text.append("  ⚑ flagged", style="bold yellow")
        if self.note:
            text.append("  ✎ note", style="bold")
        self.query_one("#rate-status", Static).update(text)

    def show_entry(self) -> None:
        view = self.view
        if view is None:  # nothing to rate: only what was said
            if self.message is not None:
                self.query_one("#rate-entry", Static).update(self.message)
            return
        scale = self.session.scale
        text = Text()  # wraps: the scale's help is read whole, at 80 columns too
        for i, metric in enumerate(scale.metrics):
            if i >= len(self.typed):
                break
            label = "choice" if scale.pairwise else (metric if len(scale.metrics) > 1 else "score")
            text.append(f"{label} ({scale.range_text}): ", style="bold")
            text.append(self.typed[i] or "", style="bold reverse" if i == len(self.typed) - 1 else "bold")
            if i == len(self.typed) - 1:
                text.append("▏", style="blink")
            text.append("  ")
        if view.editing and view.current:
            was = "/".join("" if v is None else f"{v:g}" for v in view.current.values())
            text.append(f"(was {was}; Esc: keep it)  ", style="dim")
        text.append("\n")
        if self.message is not None:
            text.append_text(self.message)
        else:
            text.append(strip_control(view.help), style="dim")
        self.query_one("#rate-entry", Static).update(text)

    def remember(self) -> None:
        if self.view is not None and not self.view.editing:
            self.marks[self.view.code] = (self.flagged, self.note)

    def say(self, message: str, style: str = "bold red") -> None:
        self.message = Text(message, style=style)
        self.show_entry()

    # -- keys ---------------------------------------------------------------------------------------

    def on_key(self, event: Any) -> None:
        if not self.busy:  # (the session's thread is activity itself)
            self.activity()  # any key is activity: active time and the lease

    @in_turn
    def action_digit(self, digit: str) -> None:
        self.activity()
        if self.view is None:
            return
        scale = self.session.scale
        typed = self.typed[-1] + digit
        metric = scale.metrics[len(self.typed) - 1]
        if not scale.accepts_prefix(typed):
            self.say(f"{typed} is not on the scale ({scale.range_text}) for {metric}")
            self.app.bell()
            return
        self.typed[-1] = typed
        self.message = None
        self.show_entry()

    @in_turn
    def action_backspace(self) -> None:
        self.activity()
        if self.view is None:
            return
        if self.typed[-1]:
            self.typed[-1] = self.typed[-1][:-1]
        elif len(self.typed) > 1:
            self.typed.pop()
        else:
            self.action_undo()
            return
        self.message = None
        self.show_entry()

    @in_turn
    def action_confirm(self) -> None:
        from engine.annotation.errors import AnnotationError, LeaseLost

        self.activity()
        if self.view is None:
            if self.fault is not None:  # the next item could not be loaded: try again
                self.next_item()
            return
        scale = self.session.scale
        value, problem = scale.check(self.typed[-1], scale.metrics[len(self.typed) - 1])
        if problem:
            self.say(problem)
            return
        if len(self.typed) < len(scale.metrics):  # the next metric of the pair
            self.typed.append("")
            self.message = None
            self.show_entry()
            return
        editing = self.view.editing
        keys = "/".join(self.typed)

        def failed(exc: Exception) -> bool:
            if isinstance(exc, LeaseLost):
                self.next_item(Text("That item went to another annotator after a long pause; your rating was "
                                    "not recorded. Here is the next one.", style="bold yellow"))
                return True
            if isinstance(exc, AnnotationError):
                if self.session.current is None:  # the item could not be kept (e.g. rated under this name elsewhere)
                    self.next_item(Text(flat(str(exc)), style="bold yellow"))
                else:
                    self.say(flat(str(exc)))
                return True
            # a database fault: nothing was written; the item and what was typed stay
            return self.said(exc, "Not recorded: ")

        def rated(_: Any) -> None:
            if editing:
                # back to the item held before the edit (the session keeps its lease)
                self.next_item(Text("Rating changed (the old one is kept in its history).", style="green"))
            else:
                self.next_item()

        self.in_session(lambda: self.session.rate(keys=keys), rated, failed)

    @in_turn
    def action_undo(self) -> None:
        self.activity()

        def undone(view: Any) -> None:
            if view is None:
                which = ("the last 10" if self.session.reopen_after is None
                         else "the last 10 made since the room opened")
                self.say(f"Nothing (more) to undo: {which} ratings can be changed", style="bold yellow")
                return
            self.show(view, Text("Type the new rating and Enter; u again: the one before; Esc: keep it",
                                 style="bold"))

        self.in_session(self.session.undo, undone, self.said)

    @in_turn
    def action_skip(self) -> None:
        self.activity()
        if self.view is None:
            return
        if self.view.editing:
            self.session.cancel_edit()
            self.next_item()
            return
        self.in_session(self.session.skip, lambda _: self.next_item(Text("Skipped: it will not come back to you.",
                                                                          style="dim")),
                        lambda exc: self.said(exc, "Not skipped: "))

    @in_turn
    def action_flag(self) -> None:
        self.activity()
        if self.view is None:
            return
        on = self.flagged = not self.flagged
        self.session.flag(on)
        self.remember()
        self.show_status()
        self.say("Flagged for review (kept with your rating or skip)" if on else "Flag removed", style="bold")

    @in_turn
    def action_note(self) -> None:
        self.activity()
        if self.view is None:
            return

        def done(text: str | None) -> None:
            from engine.annotation.errors import AnnotationError

            if text is not None:
                try:
                    self.session.set_note(text)
                except AnnotationError as exc:
                    self.say(str(exc))
                    return
                self.note = text or None
                self.remember()
                self.show_status()
                self.say("Note kept with this item" if text else "Note removed", style="bold")

        self.app.push_screen(NoteScreen(self.note or ""), done)

    @in_turn
    def action_guidelines(self) -> None:
        self.activity()
        self.app.push_screen(GuidelinesScreen(self.session.campaign.get("guidelines") or "", self.session.scale.help))

    @in_turn
    def action_back(self) -> None:
        if self.view is not None and self.view.editing:
            self.session.cancel_edit()
            self.next_item(Text("Left unchanged.", style="dim"))
            return
        # the item stays leased: coming back (now or later) continues with it, until the lease runs out
        self.dismiss()


class NoteScreen(ModalScreen[str | None]):
    """A one-line note on the item: Enter keeps it, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="rate.note-cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Static(Text("Note on this item — Enter keeps it, Esc cancels (empty: no note)", style="bold"))
            yield Input(value=self.current, id="note-input", placeholder="e.g. answer is cut off", max_length=2000)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class MarkdownText(Static):
    """Markdown drawn by Rich in one widget. Textual's Markdown widget mounts a widget per block and keeps
    the app from answering keys meanwhile: guidelines with 1,000 bullet points took 10 s to open (0.8 s
    here). Links are not links: each shows its address after its text, and nothing can be followed (on a
    server that would open a browser in the rater's terminal). A text longer than :attr:`MAX_MARKDOWN`
    is shown as plain text (laid out as Markdown, the 1 MB campaigns may hold took minutes).
    ``source``: the Markdown, as given."""

    MAX_MARKDOWN = 100_000

    def __init__(self, source: str, **kwargs: Any) -> None:
        from rich.markdown import Markdown as RichMarkdown

        shown = RichMarkdown(source, hyperlinks=False) if len(source) <= self.MAX_MARKDOWN else Text(source)
        super().__init__(shown, **kwargs)
        self.source = source


class GuidelinesScreen(ModalScreen[None]):
    """The campaign's guidelines (Markdown) and the scale; Esc or ? closes."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="rate.guidelines-close"),
        Binding("question_mark", "dismiss", "Close", show=False, id="rate.guidelines-close-alt"),
    ]

    def __init__(self, guidelines: str, scale_help: str) -> None:
        super().__init__()
        self.guidelines = strip_control(guidelines)
        self.scale_help = strip_control(scale_help)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="guidelines-box"):
            yield Static(Text(f"Scale: {self.scale_help}   (Esc closes)", style="bold"))
            yield MarkdownText(self.guidelines or "*This campaign has no guidelines.*", id="guidelines-text")


class AnnotatorNameScreen(Loads, ModalScreen[str | None]):
    """Who is rating: the name every rating is recorded under. ``check`` says why a name cannot be used
    (shown, and the name is asked again; it runs in a thread: it may ask the database); ``cancel`` says
    what Esc does."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="annotate.name-cancel")]

    def __init__(self, check: Callable[[str], str | None] | None = None, cancel: str = "Esc cancels") -> None:
        super().__init__()
        self.check = check
        self.cancel = cancel

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Static(Text(f"Your annotator name (every rating is recorded under it) — Enter; {self.cancel}",
                              style="bold"))
            yield Input(id="name-input", placeholder="e.g. alice", restrict=r"[A-Za-z0-9_.\-]*", max_length=64)
            yield Static(id="name-problem")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not name:
            return
        if self.check is None:
            self.dismiss(name)
            return
        check = self.check

        def checked(problem: str | None) -> None:
            if problem:
                self.query_one("#name-problem", Static).update(Text(problem, style="bold red"))
                return
            self.dismiss(name)

        self.load("check", lambda: check(name), checked)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_rating(app: Any, campaign: str) -> None:
    """Open blind rating of ``campaign`` as ``app.annotator`` (the workbench and the annotator's
    room both do); the session (which joins the campaign: reads and writes) starts in a thread; a
    problem is said, not raised."""
    from engine.annotation.errors import AnnotationError
    from engine.annotation.session import AnnotationSession

    store, annotator, reopen_after = app.store, app.annotator or "", getattr(app, "reopen_after", None)
    settings = getattr(app, "settings", None) or Settings()

    def failed(exc: BaseException) -> bool:
        if isinstance(exc, AnnotationError):
            app.notify(str(exc), severity="error", timeout=8, markup=False)
            return True
        return False  # a database fault (locked, read-only, the file gone): said, nothing opened

    app.load("open-rating",
             lambda: AnnotationSession(store, campaign, annotator, kind="human", reopen_after=reopen_after,
                                       renew_s=settings.annotation_renew_s, idle_gap_s=settings.annotation_idle_gap_s),
             lambda session: app.push_screen(RatingScreen(session)), failed=failed)
