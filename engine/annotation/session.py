"""A rating session: one annotator in one campaign (:class:`AnnotationSession`).

:meth:`~AnnotationSession.next_item` gives a blind :class:`ItemView` (no model, condition,
checkpoint, judge score or other annotators' ratings; untrusted text stripped of control
sequences); rate, skip, flag, note, undo / edit of the last 10 ratings, progress, and
:meth:`~AnnotationSession.touch` for active time (idle gaps over 120 s do not count) and lease renewal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from engine.annotation.campaigns import DEFAULT_LEASE_S, annotator_order, campaign_scale, get_campaign
from engine.annotation.errors import AnnotationError, LeaseLost
from engine.annotation.raters import check_annotator_name, check_note
from engine.annotation.scales import CHOICE_CODE
from engine.common.text import strip_control

IDLE_GAP_S = 120.0
RECENT_LIMIT = 10


@dataclass(frozen=True)
class ItemView:
    """What the rater sees, and nothing else: no model, condition, checkpoint, judge score or other
    rater's rating. Untrusted text has its terminal control sequences stripped (show it as plain
    text, never as markup). ``answer`` for one-answer scales; ``left``/``right`` for pairwise.
    ``number`` is the rater's own count (this is their n-th item); ``total`` the campaign's items,
    None when the campaign hides progress. ``editing``: a past rating reopened (``current`` holds its
    values as the rater typed them)."""

    code: str
    number: int
    total: int | None
    question: str
    system_prompt: str
    answer: str | None
    left: str | None
    right: str | None
    guidelines: str
    scale: str
    metrics: tuple[str, ...]
    help: str
    resumed: bool = False
    editing: bool = False
    current: dict[str, float | None] | None = None
    note: str | None = None
    flagged: bool = False


@dataclass(frozen=True)
class RecentRating:
    """One of the rater's last rated items: ``scores`` as stored (pairwise: in the item's a/b terms,
    1 = a, 2 = b, 0 = tie), ``shown`` as the rater typed them (pairwise: 1 = left, 2 = right)."""

    code: str
    scores: dict[str, float | None]
    shown: dict[str, float | None]
    note: str | None
    flagged: bool
    rated_at: str | None
    edited: bool
    rating_ids: tuple[int, ...]


@dataclass
class _Open:
    """The item on screen: a leased item to rate, or a past rating reopened for an edit."""

    code: str
    view: ItemView
    swap: int
    started_at: str
    last_touch: float
    active_s: float = 0.0
    note: str | None = None
    flagged: bool = False
    assignment_id: int | None = None  # a leased item
    recent: RecentRating | None = None  # a reopened rating
    last_renew: float = 0.0


_KEEP: Any = object()


class AnnotationSession:
    """One annotator rating one campaign. Not thread-safe (one per screen / notebook).

    ``kind``: 'human' or 'model' (a name registered as one kind can never rate as the other).
    ``clock`` measures active time (monotonic seconds; inject one in tests); ``wall`` is the
    wall clock leases are stamped with (shared by processes). Active time of an item adds the
    gaps between consecutive touches (showing the item, :meth:`touch`, the rating) that are at
    most 120 s; longer gaps are idle and not counted. Touching renews the lease (at most every
    ``renew_s`` seconds, so that typing does not write to the database on every key).

    ``reopen_after``: only ratings with a larger id can be reopened (undo, reopen, edit, history) — a room
    that trusts the name typed (``emtui annotate --ask-name``) passes the newest rating id when it opened,
    so typing another person's name never shows (or changes) that person's ratings.
    """

    def __init__(self, store: Any, campaign: str | int | Mapping[str, Any], annotator: str, kind: str = "human", *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 source: str = "tui", renew_s: float = 30.0, idle_gap_s: float = IDLE_GAP_S,
                 reopen_after: int | None = None) -> None:
        from db.errors import StoreError

        self.store = store
        self.campaign = get_campaign(store, campaign)
        self.settings: dict[str, Any] = self.campaign["settings"]
        self.scale = campaign_scale(self.campaign)
        self.kind = kind
        self.clock, self.wall, self.source = clock, wall, source
        self.renew_s, self.idle_gap_s = renew_s, idle_gap_s
        self.reopen_after = reopen_after
        self.lease_s = float(self.settings.get("lease_s") or DEFAULT_LEASE_S)
        self.overlap = int(self.campaign["overlap"])
        self.hide_progress = bool(self.settings.get("hide_progress"))
        try:
            self.annotator = store.ensure_annotator(check_annotator_name(annotator), kind)
        except StoreError as exc:
            raise AnnotationError(str(exc)) from None
        self.annotator_id = int(self.annotator["id"])
        cid = int(self.campaign["id"])
        if not store.has_annotator_order(cid, self.annotator_id):
            order = annotator_order(store.campaign_item_ids(cid), seed=int(self.campaign["seed"]),
                                    campaign=self.campaign["name"], annotator=self.annotator["name"])
            seed = f"{self.campaign['seed']}:{self.campaign['name']}:{self.annotator['name']}"
            store.ensure_annotator_order(cid, self.annotator_id, order, order_seed=seed)
        self._total: int | None = None
        self._item: _Open | None = None   # the leased item
        self._edit: _Open | None = None   # a reopened past rating
        self._undo_depth = 0

    # -- items ------------------------------------------------------------------------------------

    @property
    def current(self) -> ItemView | None:
        """The item on screen (a reopened rating while editing), or None."""
        cur = self._edit or self._item
        return cur.view if cur else None

    def next_item(self) -> ItemView | None:
        """The item to rate: the one held already, else a newly leased one; None when the campaign has
        nothing left for this annotator. A reopened past rating is closed unchanged."""
        self._edit = None
        self._undo_depth = 0
        if self._item is not None:
            if self._renew(self._item, force=True):
                self.touch()
                return self._item.view
            self._item = None  # the lease expired and was lost: claim afresh
        claim = self.store.claim_next_item(int(self.campaign["id"]), self.annotator_id, rater_kind=self.kind,
                                           overlap=self.overlap, lease_s=self.lease_s, now=self.wall())
        if claim is None:
            return None
        row = self.store.item_view_row(claim["item_id"])
        number = self.store.annotator_done_count(int(self.campaign["id"]), self.annotator_id) + 1
        view = self._view(row, number=number, resumed=claim["resumed"])
        now = self.clock()
        self._item = _Open(code=claim["code"], view=view, swap=int(row["swap"] or 0), started_at=_utc(self.wall()),
                           last_touch=now, assignment_id=claim["assignment_id"], last_renew=self.wall())
        return view

    def _view(self, row: Mapping[str, Any], *, number: int, resumed: bool = False, editing: bool = False,
              current: dict[str, float | None] | None = None, note: str | None = None,
              flagged: bool = False) -> ItemView:
        if self._total is None:
            self._total = len(self.store.campaign_item_ids(int(self.campaign["id"])))
        answer = left = right = None
        if self.scale.pairwise:
            a, b = strip_control(row["response_a"]), strip_control(row["response_b"])
            left, right = (b, a) if row["swap"] else (a, b)
        else:
            answer = strip_control(row["response_a"])
        return ItemView(code=row["code"], number=number, total=None if self.hide_progress else self._total,
                        question=strip_control(row["question"]), system_prompt=strip_control(row["system_prompt"]),
                        answer=answer, left=left, right=right, guidelines=self.campaign["guidelines"] or "",
                        scale=self.scale.name, metrics=self.scale.metrics, help=self.scale.help, resumed=resumed,
                        editing=editing, current=current, note=note, flagged=flagged)

    def touch(self) -> None:
        """Activity (a key, a scroll): counts active time and renews the lease now and then."""
        cur = self._edit or self._item
        if cur is None:
            return
        now = self.clock()
        gap = now - cur.last_touch
        if 0 <= gap <= self.idle_gap_s:
            cur.active_s += gap
        cur.last_touch = now
        if cur is self._item:
            self._renew(cur)

    heartbeat = touch

    def _renew(self, cur: _Open, *, force: bool = False) -> bool:
        wall = self.wall()
        if not force and wall - cur.last_renew < self.renew_s:
            return True
        ok = self.store.renew_item_lease(cur.assignment_id, self.annotator_id, lease_s=self.lease_s, now=wall)
        cur.last_renew = wall
        return ok

    def active_ms(self) -> int | None:
        """Active time on the item on screen so far, in milliseconds."""
        cur = self._edit or self._item
        return None if cur is None else int(round(cur.active_s * 1000))

    # -- rating -----------------------------------------------------------------------------------

    def _scores(self, value: Any, swap: int) -> list[dict[str, Any]]:
        try:
            parsed = self.scale.parse_all(value)
        except ValueError as exc:
            raise AnnotationError(str(exc)) from None
        if not self.scale.pairwise:
            return [{"metric": m, "score": parsed[m]} for m in self.scale.metrics]
        m = self.scale.metrics[0]
        shown = int(parsed[m])
        choice = {0: "tie", 1: "b" if swap else "a", 2: "a" if swap else "b"}[shown]
        return [{"metric": m, "score": float(CHOICE_CODE[choice]), "choice": choice, "shown_choice": shown,
                 "swapped": int(swap)}]

    def rate(self, value: Any = None, *, keys: str | None = None, note: str | None = None,
             flagged: bool | None = None) -> list[int]:
        """Rate the item on screen: ``value`` a number, a mapping metric -> value, or typed ``keys``
        ("73", "73/90"; pairwise "1" = left, "2" = right, "0" = tie). Records the rating with its
        note, flag, active time and start time, marks the item done and lets it go; returns the
        rating ids. While a past rating is reopened (:meth:`undo`), this edits it instead."""
        if keys is not None:
            value = keys
        if self._edit is not None:
            return self._apply_edit(self._edit, value, note=_KEEP if note is None else note,
                                    flagged=_KEEP if flagged is None else flagged)
        cur = self._require_item()
        scores = self._scores(value, cur.swap)
        note = cur.note if note is None else check_note(note)
        self.touch()
        from db.annotation import AssignmentError, NoRoom

        try:
            ids = self.store.record_rating(
                cur.assignment_id, self.annotator_id, scores=scores, overlap=self.overlap,
                note=note, flagged=cur.flagged if flagged is None else flagged,
                active_ms=int(round(cur.active_s * 1000)), started_at=cur.started_at, source=self.source,
                now=self.wall())
        except NoRoom as exc:  # only an expired lease can lose its place: imports count live leases
            self._item = None
            raise LeaseLost(str(exc)) from None
        except AssignmentError as exc:  # e.g. the same name rated it meanwhile (another terminal, an import)
            self._item = None
            raise AnnotationError(str(exc)) from None
        self._item = None
        return ids

    def _require_item(self) -> _Open:
        if self._item is None:
            raise AnnotationError("no item on screen: call next_item() first")
        return self._item

    def skip(self, note: str | None = None) -> None:
        """Skip the item on screen: it does not come back to this annotator and someone else takes it."""
        if self._edit is not None:
            self._edit = None
            return
        cur = self._require_item()
        note = cur.note if note is None else check_note(note)
        self.store.skip_item(cur.assignment_id, self.annotator_id, note=note, flagged=cur.flagged)
        self._item = None

    def flag(self, on: bool = True) -> None:
        """Flag the item on screen (broken, unreadable, needs a second look); kept with its rating or skip."""
        cur = self._edit or self._require_item()
        cur.flagged = bool(on)

    def set_note(self, text: str | None) -> None:
        """A free-text note on the item on screen, kept with its rating or skip (:func:`check_note`:
        AnnotationError for one with control characters or over 10,000 characters)."""
        cur = self._edit or self._require_item()
        cur.note = check_note(text)

    def release(self) -> None:
        """Give the leased item back (the annotator stops); others may take it at once."""
        if self._item is not None:
            self.store.release_item(self._item.assignment_id, self.annotator_id, now=self.wall())
        self._item = self._edit = None

    close = release

    # -- the last ratings: undo and edit -------------------------------------------------------------

    def recent(self, n: int = RECENT_LIMIT) -> list[RecentRating]:
        """The annotator's last ``n`` (at most 10) rated items in this campaign, newest first (only those
        rated after ``reopen_after``, when the session was given one)."""
        rows = self.store.annotator_recent_ratings(int(self.campaign["id"]), self.annotator_id,
                                                   limit=max(0, min(n, RECENT_LIMIT)))
        if self.reopen_after is not None:
            rows = [r for r in rows if r["ratings"] and min(int(s["id"]) for s in r["ratings"]) > self.reopen_after]
        out = []
        for r in rows:
            scores = {s["metric"]: s["score"] for s in r["ratings"]}
            shown = dict(scores)
            if self.scale.pairwise:
                for s in r["ratings"]:
                    shown[s["metric"]] = None if s["choice"] is None else float(
                        _shown(s["choice"], int(r["swap"] or 0)))
            out.append(RecentRating(code=r["code"], scores=scores, shown=shown, note=r["note"],
                                    flagged=bool(r["flagged"]), rated_at=r["finished_at"],
                                    edited=any(s["updated_at"] for s in r["ratings"]),
                                    rating_ids=tuple(int(s["id"]) for s in r["ratings"])))
        return out

    def undo(self) -> ItemView | None:
        """Reopen the last rated item (again: the one before, up to 10 back) to change it; the next
        :meth:`rate` edits it (with history). The leased item, if any, stays leased. None when there
        is nothing (more) to undo."""
        recent = self.recent()
        if self._undo_depth >= len(recent):
            return None
        target = recent[self._undo_depth]
        self._undo_depth += 1
        return self._reopen(target)

    def reopen(self, code: str) -> ItemView:
        """Reopen one of the last 10 rated items by code, to change it with :meth:`rate`."""
        for r in self.recent():
            if r.code == code:
                return self._reopen(r)
        raise AnnotationError(f"item {code!r} is not among your last {RECENT_LIMIT} ratings in this campaign")

    def _reopen(self, target: RecentRating) -> ItemView:
        item = self.store.campaign_item_by_code(int(self.campaign["id"]), target.code)
        row = self.store.item_view_row(int(item["id"]))
        done = self.store.annotator_done_count(int(self.campaign["id"]), self.annotator_id)
        view = self._view(row, number=max(1, done - self._undo_depth + 1), editing=True, current=dict(target.shown),
                          note=target.note, flagged=target.flagged)
        self._edit = _Open(code=target.code, view=view, swap=int(row["swap"] or 0), started_at=_utc(self.wall()),
                           last_touch=self.clock(), recent=target, note=target.note, flagged=target.flagged)
        return view

    def cancel_edit(self) -> None:
        """Close a reopened rating without changing it."""
        self._edit = None
        self._undo_depth = 0

    def edit(self, code: str, value: Any = None, *, keys: str | None = None, note: Any = _KEEP,
             flagged: Any = _KEEP) -> bool:
        """Change one of the last 10 ratings directly (new value and/or note / flag); every change is
        kept in the rating's edit history. Returns False when nothing changed."""
        self.reopen(code)
        assert self._edit is not None
        return bool(self._apply_edit(self._edit, keys if keys is not None else value, note=note, flagged=flagged))

    def _apply_edit(self, cur: _Open, value: Any, *, note: Any, flagged: Any) -> list[int]:
        assert cur.recent is not None
        self.touch()
        by_metric: dict[str, dict[str, Any]] = {}
        if value is not None:
            by_metric = {s["metric"]: s for s in self._scores(value, cur.swap)}
        if note is not _KEEP:
            note = check_note(note)
        if note is _KEEP and cur.note != cur.recent.note:
            note = cur.note  # set with set_note() while reopened
        if flagged is _KEEP and cur.flagged != cur.recent.flagged:
            flagged = cur.flagged
        rows = self.store.annotator_recent_ratings(int(self.campaign["id"]), self.annotator_id, limit=RECENT_LIMIT)
        ratings: list[dict[str, Any]] = next((r["ratings"] for r in rows if r["code"] == cur.code), [])
        changed = []
        active = int(round(cur.active_s * 1000))
        for s in ratings:
            new = by_metric.get(s["metric"])
            kw: dict[str, Any] = {}
            if new is not None:
                kw["score"] = new["score"]
                if self.scale.pairwise:
                    kw["choice"], kw["shown_choice"] = new["choice"], new["shown_choice"]
            if note is not _KEEP:
                kw["note"] = note
            if flagged is not _KEEP:
                kw["flagged"] = flagged
            if self.store.edit_rating(int(s["id"]), self.annotator_id, active_ms=active, source=self.source, **kw):
                changed.append(int(s["id"]))
        self._edit = None
        self._undo_depth = 0
        return changed

    def history(self, code: str) -> list[dict[str, Any]]:
        """Every edit of this annotator's rating(s) of an item (one of their last 10), oldest first."""
        for r in self.recent():
            if r.code == code:
                return [e for rid in r.rating_ids for e in self.store.rating_history(rid)]
        raise AnnotationError(f"item {code!r} is not among your last {RECENT_LIMIT} ratings in this campaign")

    # -- progress ---------------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """mine_done, mine_skipped, total_items, overlap, target (items × overlap), done (all done
        ratings of this rater kind), complete_items, live_leases, completion (done / target) and
        hide_progress (whether the campaign asks not to show it to the rater)."""
        p = self.store.campaign_progress(int(self.campaign["id"]), annotator_id=self.annotator_id,
                                         rater_kind=self.kind)
        p["completion"] = p["done"] / p["target"] if p["target"] else 0.0
        p["hide_progress"] = self.hide_progress
        return p


def _shown(choice: str, swap: int) -> int:
    """The key that means ``choice`` ('a' | 'b' | 'tie') when the sides are ``swap``-ped."""
    if choice == "tie":
        return 0
    return (2 if choice == "a" else 1) if swap else (1 if choice == "a" else 2)


def _utc(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
