"""Queries of the human-evaluation workbench: campaigns, items, annotators, leases, ratings.

:class:`AnnotationQueries` is a mixin of :class:`db.store.Store` built on the store's core
(:class:`db.core.StoreCore`: ``_q``/``_one``/``_scalar``, ``conn``, ``_lock``, ``transaction``), like
:class:`db.results.ResultsQueries`. Every SQL string of annotation lives here.

The rules the writers keep and the readers rely on:

- a campaign's items are fixed at creation (one transaction); an item has an opaque code,
  unique in its campaign, and a place (``position``) in the campaign's shuffled list;
- exactly k: an item has ``overlap`` places per rater kind. A done rating holds one, a live
  lease holds one, an expired lease or a skip holds none. :func:`item_has_room` is the one
  rule every way a rating enters obeys — :meth:`claim_next_item` (the rating screen, a
  notebook), :meth:`record_rating` and :meth:`import_campaign_ratings` (CSV and file
  imports) — each inside one ``BEGIN IMMEDIATE`` transaction, so two writers never take the
  last place of an item at once, an import never takes a place someone is rating in, and an
  item never reaches more than ``overlap`` annotators;
- an annotator joins a campaign with their own order of the items (``annotator_orders``);
  :meth:`claim_next_item` gives them (1) their own unexpired lease if they hold one, else
  (2) the first item in their order that they have not rated or skipped and that has room;
- human and model raters never mix: an annotator's kind is fixed by its first use, every
  assignment and rating records ``rater_kind``, and counts are per kind;
- a rating is never overwritten without a trace: :meth:`edit_rating` writes the old and new
  values to ``rating_edits``; an adjudication is a new row, the raw ratings stay.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from db.core import StoreCore, inserted_id
from db.errors import StoreError


class RaterKindError(StoreError):
    """An annotator name used as the other kind of rater (human vs model)."""


class AssignmentError(StoreError):
    """A rating, skip or edit that the assignment's state does not allow (not yours, already done,
    or the item went to other annotators after your lease expired)."""


class LeadIsRater(StoreError):
    """An adjudication by one of the item's own raters (refused: nobody resolves their own disagreement)."""


class NoRoom(AssignmentError):
    """The item's places are taken: ``done`` other annotators of the kind rated it and ``leased``
    others are rating it now (live leases), ``overlap`` in all. ``row``: the import row refused."""

    def __init__(self, message: str, *, code: str, done: int, leased: int, overlap: int,
                 row: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.done, self.leased, self.overlap, self.row = code, done, leased, overlap, row


def item_has_room(done_others: int, leased_others: int, overlap: int, *, holds_live_lease: bool) -> bool:
    """The claim rule of exactly k, the one every way a rating enters goes through.

    An annotator may rate an item (take a place, or turn their place into a rating) when the
    other annotators of their kind who rated it (``done_others``) and who hold a live lease on it
    (``leased_others``) leave a place: their own live lease is a place already theirs, so then
    only finished ratings can have filled the item."""
    if holds_live_lease:
        return done_others < overlap
    return done_others + leased_others < overlap


_KEEP = object()  # "leave this field as it is" in edit_rating


class AnnotationQueries(StoreCore):
    """Annotation queries, mixed into :class:`db.store.Store`."""

    # -- annotators -------------------------------------------------------------------------------

    def find_annotator(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM annotators WHERE name = ?", (name,))

    def ensure_annotator(self, name: str, kind: str = "human") -> dict[str, Any]:
        """The annotator called ``name``, created with ``kind`` ('human' | 'model') if new.

        A name registered as the other kind raises :class:`RaterKindError`: a model can never
        rate as a human, nor a human as a model."""
        from db.store import utc_now

        if kind not in ("human", "model"):
            raise StoreError(f"rater kind must be 'human' or 'model', not {kind!r}")
        name = name.strip()
        if not name:
            raise StoreError("an annotator needs a name")
        with self.transaction():
            row = self.find_annotator(name)
            if row is None:
                self.conn.execute(
                    "INSERT INTO annotators (name, kind, created_at) VALUES (?, ?, ?)", (name, kind, utc_now()))
                row = self.find_annotator(name)
        assert row is not None
        if row["kind"] != kind:
            raise RaterKindError(f"annotator {name!r} is registered as a {row['kind']} rater; "
                                 f"it cannot rate as a {kind} (use another name)")
        return row

    # -- campaigns --------------------------------------------------------------------------------

    def create_campaign_rows(self, *, study_id: int | None, name: str, scale: str, overlap: int,
                             guidelines: str, seed: int, settings: dict[str, Any],
                             items: Sequence[dict[str, Any]], rubric_id: int | None = None) -> int:
        """A campaign and its items, in one transaction; returns the campaign id.

        Each item: ``code``, ``position``, ``generation_id``, optional ``generation_b_id``
        (pairwise), ``swap`` (0/1) and ``stratum``."""
        from db.store import dumps, utc_now

        with self.transaction():
            if self.find_campaign(name) is not None:
                raise StoreError(f"campaign {name!r} exists")
            with self._lock:
                cur = self.conn.execute(
                    """INSERT INTO campaigns (study_id, name, rubric_id, scale, overlap, guidelines, seed,
                                              settings, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (study_id, name, rubric_id, scale, int(overlap), guidelines, int(seed), dumps(settings),
                     utc_now()))
                cid = inserted_id(cur)
                self.conn.executemany(
                    """INSERT INTO campaign_items (campaign_id, code, position, generation_id, generation_b_id,
                                                   swap, stratum)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    ((cid, it["code"], int(it["position"]), int(it["generation_id"]),
                      it.get("generation_b_id"), int(it.get("swap") or 0), it.get("stratum") or "")
                     for it in items))
        return cid

    def find_campaign(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM campaigns WHERE name = ?", (name,))

    def get_campaign(self, campaign_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))

    def list_campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its counts: id, name, study, scale, overlap, created_at, n_items,
        n_ratings (done human ratings of items: one per item and annotator, whatever the number of
        metrics), n_annotators (human) and done_pct (n_ratings of items × overlap, in %)."""
        rows = self._q(
            """SELECT c.id, c.name, s.name AS study, c.scale, c.overlap, c.created_at,
                      (SELECT count(*) FROM campaign_items i WHERE i.campaign_id = c.id) AS n_items,
                      (SELECT count(*) FROM assignments a WHERE a.campaign_id = c.id AND a.status = 'done'
                        AND IFNULL(a.rater_kind, 'human') = 'human') AS n_ratings,
                      (SELECT count(DISTINCT a.annotator_id) FROM assignments a WHERE a.campaign_id = c.id
                        AND IFNULL(a.rater_kind, 'human') = 'human') AS n_annotators
               FROM campaigns c LEFT JOIN studies s ON s.id = c.study_id ORDER BY c.id""")
        for r in rows:
            target = r["n_items"] * max(1, r["overlap"])
            r["done_pct"] = round(100.0 * min(r["n_ratings"], target) / target, 1) if target else 0.0
        return rows

    def campaign_items(self, campaign_id: int) -> list[dict[str, Any]]:
        """The campaign's items in position order: id, code, position, generation_id, generation_b_id,
        swap, stratum, condition, condition_b (what analysis and exports need; never shown to raters)."""
        return self._q(
            """SELECT i.id, i.code, i.position, i.generation_id, i.generation_b_id, i.swap, i.stratum,
                      c.name AS condition, cb.name AS condition_b
               FROM campaign_items i
               JOIN generations g ON g.id = i.generation_id
               LEFT JOIN conditions c ON c.id = g.condition_id
               LEFT JOIN generations gb ON gb.id = i.generation_b_id
               LEFT JOIN conditions cb ON cb.id = gb.condition_id
               WHERE i.campaign_id = ? ORDER BY i.position""", (campaign_id,))

    def campaign_item_ids(self, campaign_id: int) -> list[int]:
        """Item ids in position order."""
        with self._lock:
            return [r[0] for r in self.conn.execute(
                "SELECT id FROM campaign_items WHERE campaign_id = ? ORDER BY position", (campaign_id,))]

    def campaign_sample_frame(self, study_id: int) -> list[tuple[int, int, str, int, str, int, int, str]]:
        """Every answer of a study, as plain tuples, for sampling a campaign: (generation_id,
        condition_id, condition, model_id, model, checkpoint_id or 0, question_id, category),
        by generation id."""
        with self._lock:
            return self.conn.execute(
                """SELECT g.id, c.id, c.name, g.model_id, m.name, IFNULL(g.checkpoint_id, 0), g.question_id,
                          q.category
                   FROM generations g
                   JOIN conditions c ON c.id = g.condition_id
                   JOIN models m ON m.id = g.model_id
                   JOIN questions q ON q.id = g.question_id
                   WHERE c.study_id = ? ORDER BY g.id""", (study_id,)).fetchall()

    # -- joining a campaign -------------------------------------------------------------------------

    def has_annotator_order(self, campaign_id: int, annotator_id: int) -> bool:
        return self._one(
            "SELECT 1 FROM campaign_annotators WHERE campaign_id = ? AND annotator_id = ?",
            (campaign_id, annotator_id)) is not None

    def ensure_annotator_order(self, campaign_id: int, annotator_id: int, item_ids: Sequence[int], *,
                               order_seed: str) -> bool:
        """Record an annotator's order of the campaign's items (once; later calls keep the first).
        Returns True when it was written now."""
        from db.store import utc_now

        with self.transaction():
            if self.has_annotator_order(campaign_id, annotator_id):
                return False
            with self._lock:
                self.conn.execute(
                    """INSERT INTO campaign_annotators (campaign_id, annotator_id, order_seed, cursor, joined_at)
                       VALUES (?, ?, ?, 0, ?)""", (campaign_id, annotator_id, order_seed, utc_now()))
                self.conn.executemany(
                    "INSERT INTO annotator_orders (campaign_id, annotator_id, rank, item_id) VALUES (?, ?, ?, ?)",
                    ((campaign_id, annotator_id, rank, int(item)) for rank, item in enumerate(item_ids)))
        return True

    def annotator_order(self, campaign_id: int, annotator_id: int) -> list[int]:
        """An annotator's item ids, in their order."""
        with self._lock:
            return [r[0] for r in self.conn.execute(
                """SELECT item_id FROM annotator_orders WHERE campaign_id = ? AND annotator_id = ?
                   ORDER BY rank""", (campaign_id, annotator_id))]

    # -- leases -------------------------------------------------------------------------------------

    _SCAN = """SELECT o.rank, o.item_id,
                      (SELECT a.status FROM assignments a WHERE a.item_id = o.item_id AND a.annotator_id = :me),
                      (SELECT count(*) FROM assignments a WHERE a.item_id = o.item_id AND a.rater_kind = :kind
                         AND a.status = 'done'),
                      (SELECT count(*) FROM assignments a WHERE a.item_id = o.item_id AND a.rater_kind = :kind
                         AND a.status = 'leased' AND a.lease_expires > :now AND a.annotator_id != :me)
               FROM annotator_orders o
               WHERE o.campaign_id = :campaign AND o.annotator_id = :me AND o.rank >= :cursor
               ORDER BY o.rank"""

    def claim_next_item(self, campaign_id: int, annotator_id: int, *, rater_kind: str, overlap: int,
                        lease_s: float, now: float | None = None) -> dict[str, Any] | None:
        """Lease the annotator's next item, atomically; None when nothing is left for them.

        (1) Their own unexpired lease (renewed), so a returning annotator continues where they
        stopped; else (2) the first item in their order that they have not rated or skipped and
        that fewer than ``overlap`` annotators of ``rater_kind`` hold with a done rating or a live
        lease. Returns assignment_id, item_id, code, position, lease_expires and ``resumed``."""
        now = time.time() if now is None else float(now)
        with self.transaction():
            with self._lock:
                conn = self.conn
                own = conn.execute(
                    """SELECT id, item_id FROM assignments
                       WHERE annotator_id = ? AND campaign_id = ? AND status = 'leased' AND lease_expires > ?
                       ORDER BY leased_at DESC, id DESC LIMIT 1""", (annotator_id, campaign_id, now)).fetchone()
                if own is not None:
                    conn.execute("UPDATE assignments SET lease_expires = ? WHERE id = ?", (now + lease_s, own[0]))
                    return self._claimed(own[0], own[1], now + lease_s, resumed=True)
                row = conn.execute("SELECT cursor FROM campaign_annotators WHERE campaign_id = ? AND annotator_id = ?",
                                   (campaign_id, annotator_id)).fetchone()
                if row is None:
                    raise StoreError(f"annotator {annotator_id} has not joined campaign {campaign_id} "
                                     "(ensure_annotator_order first)")
                cursor = start = int(row[0])
                contiguous, hit = True, None
                scan = conn.cursor()
                try:
                    scan.execute(self._SCAN, {"me": annotator_id, "kind": rater_kind, "now": now,
                                              "campaign": campaign_id, "cursor": start})
                    while hit is None:
                        batch = scan.fetchmany(64)
                        if not batch:
                            break
                        for rank, item_id, mine, n_done, n_leased in batch:
                            if mine in ("done", "skipped") or n_done >= overlap:
                                if contiguous:  # permanently unavailable to this annotator
                                    cursor = rank + 1
                                continue
                            contiguous = False
                            if item_has_room(n_done, n_leased, overlap, holds_live_lease=False):
                                hit = item_id
                                break
                finally:
                    scan.close()
                if cursor != start:
                    conn.execute("UPDATE campaign_annotators SET cursor = ? WHERE campaign_id = ? AND annotator_id = ?",
                                 (cursor, campaign_id, annotator_id))
                if hit is None:
                    return None
                item = conn.execute("SELECT generation_id, code FROM campaign_items WHERE id = ?", (hit,)).fetchone()
                conn.execute(
                    """INSERT INTO assignments (campaign_id, generation_id, annotator_id, code, status, lease_expires,
                                                created_at, item_id, rater_kind, leased_at, claims)
                       VALUES (?, ?, ?, ?, 'leased', ?, ?, ?, ?, ?, 1)
                       ON CONFLICT (item_id, annotator_id) DO UPDATE SET
                           status = 'leased', lease_expires = excluded.lease_expires,
                           leased_at = excluded.leased_at, claims = claims + 1,
                           released_at = CASE WHEN status = 'leased' THEN lease_expires ELSE released_at END""",
                    (campaign_id, item[0], annotator_id, item[1], now + lease_s, _iso(now), hit, rater_kind, now))
                aid = conn.execute("SELECT id FROM assignments WHERE item_id = ? AND annotator_id = ?",
                                   (hit, annotator_id)).fetchone()[0]
                return self._claimed(aid, hit, now + lease_s, resumed=False)

    def _claimed(self, assignment_id: int, item_id: int, expires: float, *, resumed: bool) -> dict[str, Any]:
        row = self._one("SELECT code, position FROM campaign_items WHERE id = ?", (item_id,))
        assert row is not None
        return {"assignment_id": int(assignment_id), "item_id": int(item_id), "code": row["code"],
                "position": row["position"], "lease_expires": expires, "resumed": resumed}

    def renew_item_lease(self, assignment_id: int, annotator_id: int, *, lease_s: float,
                         now: float | None = None) -> bool:
        """Extend the annotator's live lease; False when it is no longer theirs or has expired."""
        now = time.time() if now is None else float(now)
        with self._lock:
            cur = self.conn.execute(
                """UPDATE assignments SET lease_expires = ?
                   WHERE id = ? AND annotator_id = ? AND status = 'leased' AND lease_expires > ?""",
                (now + lease_s, assignment_id, annotator_id, now))
            return cur.rowcount == 1

    def release_item(self, assignment_id: int, annotator_id: int, *, now: float | None = None) -> bool:
        """Give a leased item back (the annotator stopped); it is free for anyone at once."""
        now = time.time() if now is None else float(now)
        with self._lock:
            cur = self.conn.execute(
                """UPDATE assignments SET status = 'open', lease_expires = NULL, released_at = ?
                   WHERE id = ? AND annotator_id = ? AND status = 'leased'""", (now, assignment_id, annotator_id))
            return cur.rowcount == 1

    def item_view_row(self, item_id: int) -> dict[str, Any] | None:
        """What a rater may see of an item, and nothing else: code, position, swap, question,
        system_prompt, response_a, response_b (pairwise). No model, condition or score."""
        return self._one(
            """SELECT i.code, i.position, i.swap, q.text AS question, q.system_prompt,
                      g.response AS response_a, gb.response AS response_b
               FROM campaign_items i
               JOIN generations g ON g.id = i.generation_id
               JOIN questions q ON q.id = g.question_id
               LEFT JOIN generations gb ON gb.id = i.generation_b_id
               WHERE i.id = ?""", (item_id,))

    def campaign_item_by_code(self, campaign_id: int, code: str) -> dict[str, Any] | None:
        return self._one(
            "SELECT * FROM campaign_items WHERE campaign_id = ? AND code = ?", (campaign_id, code))

    # -- rating -------------------------------------------------------------------------------------

    _PLACES = """SELECT
                   (SELECT count(*) FROM assignments WHERE item_id = :item AND rater_kind = :kind AND status = 'done'
                      AND annotator_id != :me),
                   (SELECT count(*) FROM assignments WHERE item_id = :item AND rater_kind = :kind AND status = 'leased'
                      AND lease_expires > :now AND annotator_id != :me)"""

    def _require_room(self, conn: Any, *, item_id: int, code: str, annotator_id: int, rater_kind: str, overlap: int,
                      holds_live_lease: bool, now: float, row: dict[str, Any] | None = None) -> None:
        """Raise :class:`NoRoom` unless :func:`item_has_room` lets this annotator rate the item now
        (call inside the write transaction)."""
        done, leased = conn.execute(self._PLACES, {"item": item_id, "kind": rater_kind, "me": annotator_id,
                                                   "now": now}).fetchone()
        if item_has_room(done, leased, overlap, holds_live_lease=holds_live_lease):
            return
        if leased and not holds_live_lease and done < overlap:
            why = f"{done} rated it and {leased} other annotator(s) are rating it now"
        else:
            why = f"{done} other annotator(s) rated it"
        raise NoRoom(f"item {code} has all its {overlap} place(s) taken ({why})", code=code, done=done,
                     leased=leased, overlap=overlap, row=row)

    def _assignment(self, conn: Any, assignment_id: int, annotator_id: int) -> Any:
        a = conn.execute(
            """SELECT a.id, a.campaign_id, a.item_id, a.annotator_id, a.rater_kind, a.status, a.lease_expires,
                      i.code, i.generation_id
               FROM assignments a JOIN campaign_items i ON i.id = a.item_id WHERE a.id = ?""",
            (assignment_id,)).fetchone()
        if a is None or a["annotator_id"] != annotator_id:
            raise AssignmentError(f"assignment {assignment_id} is not this annotator's")
        if a["status"] in ("done", "skipped"):
            raise AssignmentError(f"item {a['code']} is {a['status']} already (edit the rating instead)")
        return a

    def record_rating(self, assignment_id: int, annotator_id: int, *, scores: Sequence[dict[str, Any]],
                      overlap: int, note: str | None = None, flagged: bool = False, active_ms: int | None = None,
                      started_at: str | None = None, source: str = "tui", now: float | None = None) -> list[int]:
        """Record a rating of a leased item and mark it done, in one transaction; returns the rating ids.

        ``scores``: one dict per metric: ``metric``, ``score``, and for pairwise ``choice`` ('a' | 'b' |
        'tie'), ``shown_choice`` (the key as typed) and ``swapped``. Raises :class:`AssignmentError`
        when the assignment is not the annotator's, is done or skipped, or its lease expired and the
        item has no room left (:class:`NoRoom`, by :func:`item_has_room`)."""
        from db.store import utc_now

        now = time.time() if now is None else float(now)
        stamp = utc_now()
        with self.transaction():
            with self._lock:
                conn = self.conn
                a = self._assignment(conn, assignment_id, annotator_id)
                live = a["status"] == "leased" and a["lease_expires"] is not None and a["lease_expires"] > now
                try:
                    self._require_room(conn, item_id=a["item_id"], code=a["code"], annotator_id=annotator_id,
                                       rater_kind=a["rater_kind"], overlap=overlap, holds_live_lease=live, now=now)
                except NoRoom as exc:
                    why = ("has all its ratings" if live else
                           "your lease expired and the item went to other annotators")
                    raise NoRoom(f"item {a['code']}: {why}; your rating was not recorded", code=exc.code,
                                 done=exc.done, leased=exc.leased, overlap=exc.overlap) from None
                ids = []
                for s in scores:
                    cur = conn.execute(
                        """INSERT INTO ratings (assignment_id, campaign_id, generation_id, annotator_id, rater_kind,
                                                metric, score, note, flagged, active_ms, source, started_at,
                                                created_at, item_id, choice, shown_choice, swapped)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        (a["id"], a["campaign_id"], a["generation_id"], annotator_id, a["rater_kind"], s["metric"],
                         None if s.get("score") is None else float(s["score"]), note or None, int(bool(flagged)),
                         active_ms, source, started_at, stamp, a["item_id"], s.get("choice"),
                         s.get("shown_choice"), s.get("swapped")))
                    ids.append(inserted_id(cur))
                conn.execute(
                    """UPDATE assignments SET status = 'done', lease_expires = NULL, finished_at = ?, note = ?,
                              flagged = ? WHERE id = ?""", (stamp, note or None, int(bool(flagged)), a["id"]))
        return ids

    def skip_item(self, assignment_id: int, annotator_id: int, *, note: str | None = None,
                  flagged: bool = False) -> None:
        """Skip a leased item: it does not come back to this annotator and holds no place."""
        from db.store import utc_now

        with self.transaction():
            with self._lock:
                a = self._assignment(self.conn, assignment_id, annotator_id)
                self.conn.execute(
                    """UPDATE assignments SET status = 'skipped', lease_expires = NULL, finished_at = ?, note = ?,
                              flagged = ? WHERE id = ?""", (utc_now(), note or None, int(bool(flagged)), a["id"]))

    def edit_rating(self, rating_id: int, annotator_id: int, *, score: Any = _KEEP, note: Any = _KEEP,
                    flagged: Any = _KEEP, choice: Any = _KEEP, shown_choice: Any = _KEEP,
                    active_ms: int | None = None, source: str = "tui") -> bool:
        """Change one rating row of the annotator's, keeping the history: a ``rating_edits`` row holds
        the old and new score, note, flag and choice. Returns False when nothing changed."""
        from db.store import utc_now

        with self.transaction():
            with self._lock:
                conn = self.conn
                r = conn.execute("SELECT * FROM ratings WHERE id = ?", (rating_id,)).fetchone()
                if r is None or r["annotator_id"] != annotator_id:
                    raise AssignmentError(f"rating {rating_id} is not this annotator's")
                new = {"score": r["score"] if score is _KEEP else (None if score is None else float(score)),
                       "note": r["note"] if note is _KEEP else (note or None),
                       "flagged": r["flagged"] if flagged is _KEEP else int(bool(flagged)),
                       "choice": r["choice"] if choice is _KEEP else choice,
                       "shown_choice": r["shown_choice"] if shown_choice is _KEEP else shown_choice}
                if all(new[k] == r[k] for k in new):
                    return False
                stamp = utc_now()
                conn.execute(
                    """INSERT INTO rating_edits (rating_id, annotator_id, old_score, new_score, old_note, new_note,
                                                 old_flagged, new_flagged, old_choice, new_choice, active_ms, source,
                                                 at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (rating_id, annotator_id, r["score"], new["score"], r["note"], new["note"], r["flagged"],
                     new["flagged"], r["choice"], new["choice"], active_ms, source, stamp))
                conn.execute(
                    """UPDATE ratings SET score = ?, note = ?, flagged = ?, choice = ?, shown_choice = ?, updated_at = ?
                       WHERE id = ?""",
                    (new["score"], new["note"], new["flagged"], new["choice"], new["shown_choice"], stamp, rating_id))
                if r["assignment_id"] is not None:
                    conn.execute("UPDATE assignments SET note = ?, flagged = ? WHERE id = ?",
                                 (new["note"], new["flagged"], r["assignment_id"]))
        return True

    def rating_history(self, rating_id: int) -> list[dict[str, Any]]:
        """Every edit of one rating, oldest first."""
        return self._q("SELECT * FROM rating_edits WHERE rating_id = ? ORDER BY id",
                       (rating_id,))

    def annotator_recent_ratings(self, campaign_id: int, annotator_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
        """The annotator's last ``limit`` rated items in the campaign, newest first: assignment_id, item_id,
        code, position, swap, finished_at, note, flagged and ``ratings`` (rating id, metric, score, choice,
        shown_choice, note, flagged, active_ms, created_at, updated_at)."""
        with self._lock:
            recent = self.conn.execute(
                """SELECT assignment_id FROM ratings WHERE annotator_id = ? AND campaign_id = ?
                   ORDER BY id DESC LIMIT ?""", (annotator_id, campaign_id, limit * 8)).fetchall()
        order: list[int] = []
        for (aid,) in recent:
            if aid is not None and aid not in order:
                order.append(aid)
        order = order[:limit]
        if not order:
            return []
        marks = ",".join("?" * len(order))
        rows = {r["assignment_id"]: r for r in self._q(
            f"""SELECT a.id AS assignment_id, a.item_id, i.code, i.position, i.swap, a.finished_at, a.note, a.flagged
                FROM assignments a JOIN campaign_items i ON i.id = a.item_id WHERE a.id IN ({marks})""", order)}
        for r in rows.values():
            r["ratings"] = []
        for s in self._q(
                f"""SELECT id, assignment_id, metric, score, choice, shown_choice, note, flagged, active_ms,
                           created_at, updated_at
                    FROM ratings WHERE assignment_id IN ({marks}) ORDER BY id""", order):
            rows[s["assignment_id"]]["ratings"].append(s)
        return [rows[a] for a in order if a in rows]

    def last_rating_id(self) -> int:
        """The id of the newest rating in the database (0 when there is none): ratings made later have larger ids."""
        return int(self._scalar("SELECT coalesce(max(id), 0) FROM ratings"))

    # -- progress -----------------------------------------------------------------------------------

    def annotator_done_count(self, campaign_id: int, annotator_id: int) -> int:
        return int(self._scalar(
            "SELECT count(*) FROM assignments WHERE annotator_id = ? AND campaign_id = ? AND status = 'done'",
            (annotator_id, campaign_id)))

    def campaign_progress(self, campaign_id: int, *, annotator_id: int | None = None,
                          rater_kind: str = "human") -> dict[str, Any]:
        """Counts: total_items, overlap, target (items × overlap), done (done ratings of ``rater_kind``),
        complete_items (items with ``overlap`` done ratings), live_leases, and, for ``annotator_id``,
        mine_done, mine_skipped."""
        c = self.get_campaign(campaign_id)
        if c is None:
            raise StoreError(f"no campaign with id {campaign_id}")
        k = int(c["overlap"])
        row = self._one(
            """SELECT (SELECT count(*) FROM campaign_items WHERE campaign_id = :c) AS total_items,
                      (SELECT count(*) FROM assignments WHERE campaign_id = :c AND status = 'done'
                        AND rater_kind = :kind) AS done,
                      (SELECT count(*) FROM (SELECT item_id FROM assignments WHERE campaign_id = :c AND status = 'done'
                        AND rater_kind = :kind GROUP BY item_id HAVING count(*) >= :k)) AS complete_items,
                      (SELECT count(*) FROM assignments WHERE campaign_id = :c AND status = 'leased'
                        AND rater_kind = :kind AND lease_expires > :now) AS live_leases""",
            {"c": campaign_id, "kind": rater_kind, "k": k, "now": time.time()})
        out = dict(row or {})
        out["overlap"] = k
        out["target"] = out["total_items"] * k
        if annotator_id is not None:
            for status in ("done", "skipped"):
                out[f"mine_{status}"] = int(self._scalar(
                    "SELECT count(*) FROM assignments WHERE annotator_id = ? AND campaign_id = ? AND status = ?",
                    (annotator_id, campaign_id, status)))
        return out

    def campaign_annotator_counts(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per annotator who joined or rated: name, kind, done, skipped, leased (live), last (finished_at)."""
        return self._q(
            """SELECT an.name, an.kind,
                      sum(a.status = 'done') AS done, sum(a.status = 'skipped') AS skipped,
                      sum(a.status = 'leased' AND a.lease_expires > :now) AS leased,
                      sum(a.flagged) AS flagged, max(a.finished_at) AS last
               FROM assignments a JOIN annotators an ON an.id = a.annotator_id
               WHERE a.campaign_id = :c GROUP BY an.id ORDER BY an.kind, an.name""",
            {"c": campaign_id, "now": time.time()})

    # -- bulk writes (imports) ----------------------------------------------------------------------

    def import_campaign_ratings(self, campaign_id: int, rows: Iterable[dict[str, Any]], *, source: str,
                                now: float | None = None) -> int:
        """Write finished ratings gathered elsewhere (a CSV, a study's file), in one ``BEGIN IMMEDIATE``
        transaction; returns how many items were rated. Each row: annotator_id, rater_kind, item_id,
        scores (as for :meth:`record_rating`), note, flagged (other keys are kept for the caller: a
        refused row comes back on the error). Every row goes through :func:`item_has_room`, in order,
        against the campaign's overlap, the ratings stored and being written, and the live leases of
        annotators rating the item now: a row that would take a place someone holds raises
        :class:`NoRoom` and nothing is written. A row for an item the annotator rated already raises
        :class:`AssignmentError` (ratings change by :meth:`edit_rating`, which keeps the history)."""
        from db.store import utc_now

        now = time.time() if now is None else float(now)
        stamp = utc_now()
        n = 0
        with self.transaction():
            with self._lock:
                conn = self.conn
                overlap = conn.execute("SELECT overlap FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
                if overlap is None:
                    raise StoreError(f"no campaign with id {campaign_id}")
                for row in rows:
                    item = conn.execute(
                        "SELECT generation_id, code FROM campaign_items WHERE id = ? AND campaign_id = ?",
                        (row["item_id"], campaign_id)).fetchone()
                    if item is None:
                        raise StoreError(f"item {row['item_id']} is not in campaign {campaign_id}")
                    mine = conn.execute(
                        "SELECT status, lease_expires FROM assignments WHERE item_id = ? AND annotator_id = ?",
                        (row["item_id"], row["annotator_id"])).fetchone()
                    if mine is not None and mine["status"] == "done":
                        raise AssignmentError(f"item {item['code']} is rated by this annotator already")
                    live = mine is not None and mine["status"] == "leased" and (mine["lease_expires"] or 0) > now
                    self._require_room(conn, item_id=row["item_id"], code=item["code"],
                                       annotator_id=row["annotator_id"], rater_kind=row["rater_kind"],
                                       overlap=int(overlap[0]), holds_live_lease=live, now=now, row=row)
                    conn.execute(
                        """INSERT INTO assignments (campaign_id, generation_id, annotator_id, code, status, created_at,
                                                    item_id, rater_kind, claims, finished_at, note, flagged)
                           VALUES (?, ?, ?, ?, 'done', ?, ?, ?, 0, ?, ?, ?)
                           ON CONFLICT (item_id, annotator_id) DO UPDATE SET status = 'done', lease_expires = NULL,
                               finished_at = excluded.finished_at, note = excluded.note, flagged = excluded.flagged""",
                        (campaign_id, item[0], row["annotator_id"], item[1], stamp, row["item_id"], row["rater_kind"],
                         stamp, row.get("note") or None, int(bool(row.get("flagged")))))
                    aid = conn.execute("SELECT id FROM assignments WHERE item_id = ? AND annotator_id = ?",
                                       (row["item_id"], row["annotator_id"])).fetchone()[0]
                    for s in row["scores"]:
                        conn.execute(
                            """INSERT INTO ratings (assignment_id, campaign_id, generation_id, annotator_id, rater_kind,
                                                    metric, score, note, flagged, active_ms, source, started_at,
                                                    created_at, item_id, choice, shown_choice, swapped)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, NULL, NULL)""",
                            (aid, campaign_id, item[0], row["annotator_id"], row["rater_kind"], s["metric"],
                             None if s.get("score") is None else float(s["score"]), row.get("note") or None,
                             int(bool(row.get("flagged"))), source, stamp, row["item_id"], s.get("choice")))
                    n += 1
        return n

    # -- reading ratings ----------------------------------------------------------------------------

    _RATING_ROWS = """SELECT r.id AS rating_id, r.item_id, i.code, i.position, i.generation_id, i.generation_b_id,
                             i.swap, i.stratum, c.name AS condition, cb.name AS condition_b, g.model_id,
                             g.question_id, r.campaign_id, r.annotator_id, an.name AS annotator, r.rater_kind,
                             r.metric, r.score, r.choice, r.shown_choice, r.swapped, r.note, r.flagged,
                             r.active_ms, r.source, r.created_at, r.updated_at
                      FROM ratings r
                      JOIN campaign_items i ON i.id = r.item_id
                      JOIN annotators an ON an.id = r.annotator_id
                      JOIN generations g ON g.id = i.generation_id
                      LEFT JOIN conditions c ON c.id = g.condition_id
                      LEFT JOIN generations gb ON gb.id = i.generation_b_id
                      LEFT JOIN conditions cb ON cb.id = gb.condition_id"""

    def campaign_rating_rows(self, campaign_id: int, *, rater_kind: str | None = "human") -> list[dict[str, Any]]:
        """The ratings of a campaign, one row per (item, annotator, metric): rating_id, item_id, code, position,
        generation_id, generation_b_id, swap, stratum, condition, condition_b, model_id, question_id,
        campaign_id, annotator_id, annotator, rater_kind, metric, score, choice, shown_choice, swapped,
        note, flagged, active_ms, source, created_at, updated_at. Only ``rater_kind``'s rows (None: every
        rater; rows keep their kind, humans and models are never merged)."""
        return self._rating_rows("r.campaign_id = ?", campaign_id, rater_kind, "i.position, an.name, r.metric")

    def study_rating_rows(self, study_id: int, *, rater_kind: str | None = "human") -> list[dict[str, Any]]:
        """Every campaign rating of a study's campaigns (columns as :meth:`campaign_rating_rows`)."""
        return self._rating_rows("r.campaign_id IN (SELECT id FROM campaigns WHERE study_id = ?)", study_id,
                                 rater_kind, "r.campaign_id, i.position, an.name, r.metric")

    def _rating_rows(self, where: str, key: int, rater_kind: str | None, order: str) -> list[dict[str, Any]]:
        params: list[Any] = [key]
        if rater_kind is not None:
            where += " AND r.rater_kind = ?"
            params.append(rater_kind)
        return self._q(f"{self._RATING_ROWS} WHERE {where} ORDER BY {order}", params)

    def campaign_score_rows(self, campaign_id: int, *, rater_kind: str = "human") -> list[tuple[Any, ...]]:
        """The fast path for agreement: (item_id, annotator, metric, score, choice) of every rating of
        ``rater_kind`` with a score, as plain tuples (no other kind's rows, ever)."""
        return self._tuples(
            """SELECT r.item_id, an.name, r.metric, r.score, r.choice
               FROM ratings r JOIN annotators an ON an.id = r.annotator_id
               WHERE r.campaign_id = ? AND r.rater_kind = ? AND r.score IS NOT NULL AND r.item_id IS NOT NULL
                 AND an.kind = r.rater_kind""", (campaign_id, rater_kind))

    def campaign_item_groups(self, campaign_id: int) -> list[tuple[Any, ...]]:
        """(item_id, condition, condition_b, stratum) of every item, as plain tuples."""
        return self._tuples(
            """SELECT i.id, c.name, cb.name, i.stratum
               FROM campaign_items i
               JOIN generations g ON g.id = i.generation_id
               LEFT JOIN conditions c ON c.id = g.condition_id
               LEFT JOIN generations gb ON gb.id = i.generation_b_id
               LEFT JOIN conditions cb ON cb.id = gb.condition_id
               WHERE i.campaign_id = ?""", (campaign_id,))

    def campaign_judge_rubrics(self, campaign_id: int) -> list[dict[str, Any]]:
        """The rubrics of the judgments of the campaign items' answers (their metrics carry scale and
        direction); cheaper than the study's when the study is large."""
        return self._q(
            """SELECT r.* FROM rubrics r WHERE r.id IN (
                 SELECT DISTINCT j.rubric_id FROM campaign_items i JOIN judgments j ON j.generation_id = i.generation_id
                 WHERE i.campaign_id = ?) ORDER BY r.id""", (campaign_id,))

    def campaign_judge_scores(self, campaign_id: int, metrics: Sequence[str]) -> list[dict[str, Any]]:
        """The judges' scores of the campaign items' (first) answers for ``metrics``: item_id, judge_id,
        judge, judge_model, rubric_id, metric, score (ok judgments with a score only)."""
        if not metrics:
            return []
        marks = ",".join("?" * len(metrics))
        return self._q(
            f"""SELECT i.id AS item_id, j.judge_id, jd.name AS judge, jd.model AS judge_model, j.rubric_id,
                       s.metric, s.score
                FROM campaign_items i
                JOIN judgments j ON j.generation_id = i.generation_id
                JOIN judges jd ON jd.id = j.judge_id
                JOIN judgment_scores s ON s.judgment_id = j.id
                WHERE i.campaign_id = ? AND j.status = 'ok' AND s.score IS NOT NULL AND s.metric IN ({marks})
                ORDER BY i.id, j.judge_id""", (campaign_id, *metrics))

    # -- disagreements and adjudication ---------------------------------------------------------------

    def campaign_disagreements(self, campaign_id: int, *, threshold: float,
                               metric: str | None = None) -> list[dict[str, Any]]:
        """Items whose human ratings of a metric span more than ``threshold`` (max - min), widest first:
        item_id, code, position, metric, n, low, high, spread, and the latest adjudication (adjudicated
        score, adjudicated_by) if any."""
        where = "r.campaign_id = :c AND r.rater_kind = 'human' AND r.score IS NOT NULL"
        params: dict[str, Any] = {"c": campaign_id, "t": threshold}
        if metric is not None:
            where += " AND r.metric = :m"
            params["m"] = metric
        rows = self._q(
            f"""SELECT r.item_id, i.code, i.position, r.metric, count(*) AS n, min(r.score) AS low,
                       max(r.score) AS high, max(r.score) - min(r.score) AS spread
                FROM ratings r JOIN campaign_items i ON i.id = r.item_id
                WHERE {where}
                GROUP BY r.item_id, r.metric HAVING count(*) >= 2 AND max(r.score) - min(r.score) > :t
                ORDER BY spread DESC, i.position, r.metric""", params)
        latest = {(a["item_id"], a["metric"]): a for a in self.campaign_adjudications(campaign_id)}
        for r in rows:
            adj = latest.get((r["item_id"], r["metric"]))
            r["adjudicated"] = None if adj is None else adj["score"]
            r["adjudicated_by"] = None if adj is None else adj["lead"]
        return rows

    def add_adjudication(self, campaign_id: int, item_id: int, *, metric: str, score: float | None,
                         lead_annotator_id: int, note: str | None = None, choice: str | None = None,
                         now: float | None = None) -> int:
        """A lead annotator's resolution of an item's metric (a new row; the ratings are kept as they are).

        Refused (:class:`LeadIsRater`) when the lead rated the item or is rating it now (a live lease):
        nobody resolves a disagreement they are part of. Checked and written in one transaction."""
        from db.store import utc_now

        now = time.time() if now is None else float(now)
        with self.transaction():
            with self._lock:
                conn = self.conn
                part = conn.execute(
                    """SELECT a.status, a.lease_expires, i.code,
                              EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = a.item_id
                                      AND r.annotator_id = a.annotator_id) AS rated
                       FROM assignments a JOIN campaign_items i ON i.id = a.item_id
                       WHERE a.item_id = ? AND a.annotator_id = ?""", (item_id, lead_annotator_id)).fetchone()
                if part is not None and (part["rated"] or part["status"] == "done"):
                    raise LeadIsRater(f"item {part['code']}: the lead rated it; a disagreement is resolved by "
                                      "someone who is not one of its raters")
                if part is not None and part["status"] == "leased" and (part["lease_expires"] or 0) > now:
                    raise LeadIsRater(f"item {part['code']}: the lead is rating it now; a disagreement is "
                                      "resolved by someone who is not one of its raters")
                cur = conn.execute(
                    """INSERT INTO adjudications (campaign_id, item_id, metric, score, choice, lead_annotator_id, note,
                                                  created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (campaign_id, item_id, metric, score, choice, lead_annotator_id, note or None, utc_now()))
                return inserted_id(cur)

    def campaign_adjudications(self, campaign_id: int) -> list[dict[str, Any]]:
        """The latest adjudication per (item, metric): id, item_id, code, metric, score, choice, lead, note,
        created_at."""
        return self._q(
            """SELECT d.id, d.item_id, i.code, d.metric, d.score, d.choice, an.name AS lead, d.note, d.created_at
               FROM adjudications d JOIN campaign_items i ON i.id = d.item_id
               JOIN annotators an ON an.id = d.lead_annotator_id
               WHERE d.campaign_id = ? AND d.id = (SELECT max(x.id) FROM adjudications x
                   WHERE x.campaign_id = d.campaign_id AND x.item_id = d.item_id AND x.metric = d.metric)
               ORDER BY i.position, d.metric""", (campaign_id,))

    # -- benchmarks -----------------------------------------------------------------------------------

    def generation_by_id(self, generation_id: int) -> tuple[Any, ...] | None:
        """A bare primary-key read of one answer: the baseline bench/annotate_latency.py measures against."""
        with self._lock:
            return self.conn.execute(
                "SELECT id, question_id, response FROM generations WHERE id = ?", (generation_id,)).fetchone()


def _iso(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
