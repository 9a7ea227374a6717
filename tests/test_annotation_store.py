"""db/annotation.py against real SQLite files: migration 3, claims (exactly k, leases, returning
annotators, per-annotator orders), ratings with edit history, and the indexes the claim relies on."""

from __future__ import annotations

import sqlite3

import pytest

from db import SCHEMA_VERSION, StoreError, open_store, utc_now
from db.annotation import AssignmentError, RaterKindError
from engine.annotation.campaigns import annotator_order, create_campaign
from engine.results.synthetic import SyntheticSpec, make_synthetic_study


def study(store, answers: int = 20, judges=()) -> int:
    return make_synthetic_study(store, SyntheticSpec(answers_per_condition=answers, judges=list(judges)))


def campaign(store, name: str = "c", n: int = 12, overlap: int = 1, **kw) -> dict:
    return create_campaign(store, name=name, study="synthetic", scale="0-3", n_items=n, overlap=overlap, **kw)


def join(store, c: dict, who: str, kind: str = "human") -> int:
    a = store.ensure_annotator(who, kind)
    order = annotator_order(store.campaign_item_ids(c["id"]), seed=c["seed"], campaign=c["name"], annotator=who)
    store.ensure_annotator_order(c["id"], a["id"], order, order_seed="t")
    return int(a["id"])


def claim(store, c: dict, aid: int, now: float, lease_s: float = 600.0, kind: str = "human"):
    return store.claim_next_item(c["id"], aid, rater_kind=kind, overlap=c["overlap"], lease_s=lease_s, now=now)


def rate(store, c: dict, got: dict, aid: int, score: float = 1.0, now: float = 0.0) -> list[int]:
    return store.record_rating(got["assignment_id"], aid, scores=[{"metric": "misalignment", "score": score}],
                               overlap=c["overlap"], now=now)


# -- migration 3 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("old_version", [1, 2])
def test_old_database_upgrades_to_v3_keeping_rows(tmp_path, old_version):
    path = tmp_path / "old.db"
    old = open_store(path, upto=old_version)
    assert old.user_version == old_version
    assert "campaign_items" not in old.table_names()
    study(old, answers=3)
    gen = old._scalar("SELECT min(id) FROM generations")
    # a v1-era campaign, assignment and rating (as the old schema allowed them)
    cid = old.db["campaigns"].insert({"name": "legacy", "scale": "0-3", "created_at": "t"}).last_pk
    ann = old.db["annotators"].insert({"name": "ann", "kind": "human", "created_at": "t"}).last_pk
    aid = old.db["assignments"].insert({"campaign_id": cid, "generation_id": gen, "annotator_id": ann,
                                        "code": "OLD-1", "status": "done", "created_at": "t"}).last_pk
    old.db["ratings"].insert({"assignment_id": aid, "campaign_id": cid, "generation_id": gen, "annotator_id": ann,
                              "rater_kind": "human", "metric": "misalignment", "score": 2.0, "created_at": "t"})
    before = old.counts()
    old.close()

    new = open_store(path)
    try:
        assert new.user_version == SCHEMA_VERSION >= 3
        for table in ("campaign_items", "campaign_annotators", "annotator_orders", "rating_edits", "adjudications"):
            assert table in new.table_names()
        counts = new.counts()
        assert {k: v for k, v in counts.items() if k in before} == before
        assert {"item_id", "rater_kind", "leased_at", "claims", "finished_at"} <= set(new.columns("assignments"))
        assert {"item_id", "choice", "shown_choice", "swapped", "updated_at"} <= set(new.columns("ratings"))
        row = new.generation_ratings(gen)[0]
        assert (row["annotator"], row["score"]) == ("ann", 2.0)
        listed = new.list_campaigns()
        assert [(c["name"], c["n_items"]) for c in listed] == [("legacy", 0)]
        indexes = {r["name"] for r in new._q("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"assignments_item_annotator", "assignments_item_holders", "assignments_annotator",
                "ratings_campaign", "ratings_annotator", "campaign_items_generation"} <= indexes
        # the new tables work on the upgraded file
        c = campaign(new, n=3)
        a = join(new, c, "bob")
        got = claim(new, c, a, now=100.0)
        assert got is not None and rate(new, c, got, a, now=101.0)
    finally:
        new.close()
    again = open_store(path)
    try:
        assert again.user_version == SCHEMA_VERSION
    finally:
        again.close()


def test_claim_uses_indexes(store):
    """The claim's scan walks one annotator's order by primary key and probes assignments by index."""
    study(store)
    c = campaign(store)
    a = join(store, c, "ann")
    plan = " | ".join(r["detail"] for r in store._q(
        "EXPLAIN QUERY PLAN " + store._SCAN,
        {"me": a, "kind": "human", "now": 0.0, "campaign": c["id"], "cursor": 0}))
    assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan
    assert "SEARCH o USING PRIMARY KEY (campaign_id=? AND annotator_id=? AND rank>?)" in plan, plan
    assert "assignments_item_annotator" in plan and "assignments_item_holders" in plan, plan


# -- annotators --------------------------------------------------------------------------------------------


def test_annotator_kind_is_fixed(store):
    assert store.ensure_annotator("gpt-4o", "model")["kind"] == "model"
    with pytest.raises(RaterKindError, match="registered as a model rater; it cannot rate as a human"):
        store.ensure_annotator("gpt-4o", "human")
    store.ensure_annotator("alice")
    with pytest.raises(RaterKindError, match="registered as a human rater"):
        store.ensure_annotator("alice", "model")
    with pytest.raises(StoreError):
        store.ensure_annotator("  ")
    assert [a["name"] for a in store.list_annotators()] == ["gpt-4o", "alice"]


# -- claims ------------------------------------------------------------------------------------------------


def test_each_item_reaches_exactly_k_annotators(store):
    study(store)
    c = campaign(store, n=30, overlap=3)
    people = {who: join(store, c, who) for who in ("a", "b", "c", "d", "e")}
    active = dict(people)
    t = 1000.0
    while active:
        for who, aid in list(active.items()):
            got = claim(store, c, aid, now=t)
            if got is None:
                del active[who]
                continue
            rate(store, c, got, aid, now=t)
            t += 1
    rows = store.campaign_rating_rows(c["id"])
    per_item: dict[int, set[str]] = {}
    for r in rows:
        per_item.setdefault(r["item_id"], set()).add(r["annotator"])
    assert len(per_item) == 30 and all(len(v) == 3 for v in per_item.values())
    assert len(rows) == 90
    p = store.campaign_progress(c["id"])
    assert (p["done"], p["complete_items"], p["target"]) == (90, 30, 90)


def test_live_leases_hold_places_and_expired_ones_do_not(store):
    study(store)
    c = campaign(store, n=1, overlap=1)
    a, b = join(store, c, "a"), join(store, c, "b")
    got = claim(store, c, a, now=0.0, lease_s=10)
    assert got is not None and not got["resumed"]
    assert claim(store, c, b, now=5.0, lease_s=10) is None          # the one place is held
    taken = claim(store, c, b, now=11.0, lease_s=10)                 # a's lease expired: b takes it
    assert taken is not None and taken["code"] == got["code"]
    with pytest.raises(AssignmentError, match="lease expired and the item went to other annotators"):
        rate(store, c, got, a, now=12.0)
    assert rate(store, c, taken, b, now=12.0)
    assert store.campaign_progress(c["id"])["done"] == 1
    assert claim(store, c, a, now=13.0) is None


def test_expired_lease_rating_is_accepted_while_there_is_room(store):
    study(store)
    c = campaign(store, n=1, overlap=2)
    a = join(store, c, "a")
    got = claim(store, c, a, now=0.0, lease_s=10)
    assert rate(store, c, got, a, now=500.0)  # expired, but nobody else holds the item


def test_a_returning_annotator_continues_where_they_stopped(store):
    study(store)
    c = campaign(store, n=10, overlap=1)
    a = join(store, c, "a")
    first = claim(store, c, a, now=0.0)
    again = claim(store, c, a, now=30.0)
    assert again["code"] == first["code"] and again["resumed"] is True
    assert again["assignment_id"] == first["assignment_id"]
    assert again["lease_expires"] == 630.0  # renewed
    assert store.renew_item_lease(first["assignment_id"], a, lease_s=600, now=40.0)
    assert store.release_item(first["assignment_id"], a, now=50.0)
    b = join(store, c, "b")
    order_b = store.annotator_order(c["id"], b)
    # released: free for anyone, and a (who did not rate it) may take it back later
    assert claim(store, c, b, now=51.0)["item_id"] == order_b[0]


def test_per_annotator_orders_differ_and_are_seeded(store):
    study(store, answers=40)
    c = campaign(store, n=60)
    a, b = join(store, c, "alice"), join(store, c, "bob")
    oa, ob = store.annotator_order(c["id"], a), store.annotator_order(c["id"], b)
    assert sorted(oa) == sorted(ob) == sorted(store.campaign_item_ids(c["id"]))
    assert oa != ob and oa[:5] != ob[:5]
    assert oa == annotator_order(store.campaign_item_ids(c["id"]), seed=c["seed"], campaign=c["name"],
                                 annotator="alice")
    assert claim(store, c, a, now=0.0)["item_id"] == oa[0]
    # overlap 1: a holds oa[0], so b gets the first of their own order that is not held
    assert claim(store, c, b, now=0.0)["item_id"] == (ob[0] if ob[0] != oa[0] else ob[1])
    # joining again keeps the first order
    assert store.ensure_annotator_order(c["id"], a, list(reversed(oa)), order_seed="x") is False
    assert store.annotator_order(c["id"], a) == oa


def test_skipped_items_do_not_come_back_and_hold_no_place(store):
    study(store)
    c = campaign(store, n=2, overlap=1)
    a, b = join(store, c, "a"), join(store, c, "b")
    got = claim(store, c, a, now=0.0)
    store.skip_item(got["assignment_id"], a, note="unreadable", flagged=True)
    nxt = claim(store, c, a, now=1.0)
    assert nxt["item_id"] != got["item_id"]
    rate(store, c, nxt, a, now=2.0)
    assert claim(store, c, a, now=3.0) is None
    assert claim(store, c, b, now=3.0)["item_id"] == got["item_id"]  # a's skip did not count toward k
    counts = {r["name"]: r for r in store.campaign_annotator_counts(c["id"])}
    assert (counts["a"]["done"], counts["a"]["skipped"], counts["a"]["flagged"]) == (1, 1, 1)


def test_humans_and_models_have_separate_places(store):
    study(store)
    c = campaign(store, n=1, overlap=1)
    h, m = join(store, c, "h"), join(store, c, "bot", "model")
    got = claim(store, c, h, now=0.0)
    rate(store, c, got, h, now=1.0)
    model = claim(store, c, m, now=2.0, kind="model")
    assert model is not None
    rate(store, c, model, m, now=3.0)
    assert store.campaign_progress(c["id"])["done"] == 1
    assert store.campaign_progress(c["id"], rater_kind="model")["done"] == 1
    assert [r["annotator"] for r in store.campaign_rating_rows(c["id"])] == ["h"]
    assert {r["rater_kind"] for r in store.campaign_rating_rows(c["id"], rater_kind=None)} == {"human", "model"}
    assert store.list_campaigns()[0]["n_ratings"] == 1


# -- ratings and edits -------------------------------------------------------------------------------------


def test_rating_is_one_transaction_and_cannot_be_repeated(store):
    study(store)
    c = campaign(store, n=2)
    a, b = join(store, c, "a"), join(store, c, "b")
    got = claim(store, c, a, now=0.0)
    with pytest.raises(AssignmentError, match="not this annotator's"):
        rate(store, c, got, b)
    before = store.count("ratings")
    with pytest.raises(sqlite3.IntegrityError):  # a bad second metric row rolls back the first
        store.record_rating(got["assignment_id"], a, overlap=1, now=1.0,
                            scores=[{"metric": "misalignment", "score": 1}, {"metric": None, "score": 2}])
    assert store.count("ratings") == before
    assert store.get_campaign(c["id"]) and claim(store, c, a, now=2.0)["resumed"] is True
    rate(store, c, got, a, now=3.0)
    with pytest.raises(AssignmentError, match="done already"):
        rate(store, c, got, a, now=4.0)


def test_edit_keeps_the_history(store):
    study(store)
    c = campaign(store, n=2)
    a = join(store, c, "a")
    got = claim(store, c, a, now=0.0)
    (rid,) = rate(store, c, got, a, score=1.0)
    assert store.edit_rating(rid, a, score=3.0, note="second look", active_ms=1200) is True
    assert store.edit_rating(rid, a, score=3.0) is False  # nothing changed: no history row
    assert store.edit_rating(rid, a, flagged=True) is True
    hist = store.rating_history(rid)
    assert [(h["old_score"], h["new_score"], h["new_note"], h["old_flagged"], h["new_flagged"]) for h in hist] == \
        [(1.0, 3.0, "second look", 0, 0), (3.0, 3.0, "second look", 0, 1)]
    row = store.campaign_rating_rows(c["id"])[0]
    assert (row["score"], row["note"], row["flagged"]) == (3.0, "second look", 1) and row["updated_at"]
    b = join(store, c, "b")
    with pytest.raises(AssignmentError):
        store.edit_rating(rid, b, score=0.0)
    recent = store.annotator_recent_ratings(c["id"], a)
    assert [r["code"] for r in recent] == [got["code"]] and recent[0]["ratings"][0]["score"] == 3.0


def test_disagreements_and_adjudication_keep_raw_ratings(store):
    study(store)
    c = campaign(store, n=3, overlap=2)
    a, b = join(store, c, "a"), join(store, c, "b")
    scores = {"a": [0.0, 1.0, 3.0], "b": [3.0, 1.0, 2.0]}
    for who, aid in (("a", a), ("b", b)):
        for i in range(3):
            got = claim(store, c, aid, now=float(i))
            pos = store.campaign_item_by_code(c["id"], got["code"])["position"]
            rate(store, c, got, aid, score=scores[who][pos])
    rows = store.campaign_disagreements(c["id"], threshold=1.0)
    assert [(r["position"], r["spread"]) for r in rows] == [(0, 3.0)]
    lead = store.ensure_annotator("lead")["id"]
    store.add_adjudication(c["id"], rows[0]["item_id"], metric="misalignment", score=2.0, lead_annotator_id=lead,
                           note="read twice")
    store.add_adjudication(c["id"], rows[0]["item_id"], metric="misalignment", score=3.0, lead_annotator_id=lead)
    again = store.campaign_disagreements(c["id"], threshold=1.0)
    assert (again[0]["adjudicated"], again[0]["adjudicated_by"]) == (3.0, "lead")
    assert store.count("adjudications") == 2
    assert sorted(r["score"] for r in store.campaign_rating_rows(c["id"]) if r["position"] == 0) == [0.0, 3.0]


def test_campaign_rows_are_all_or_nothing(store):
    study(store)
    items = [{"code": "AAAA-AA", "position": 0, "generation_id": 1},
             {"code": "AAAA-AA", "position": 1, "generation_id": 2}]  # a duplicate code
    with pytest.raises(sqlite3.IntegrityError):
        store.create_campaign_rows(study_id=1, name="dup", scale="0-3", overlap=1, guidelines="", seed=0,
                                   settings={}, items=items)
    assert store.find_campaign("dup") is None and store.count("campaign_items") == 0
    store.create_campaign_rows(study_id=1, name="ok", scale="0-3", overlap=1, guidelines="", seed=0, settings={},
                               items=items[:1])
    with pytest.raises(StoreError, match="campaign 'ok' exists"):
        store.create_campaign_rows(study_id=1, name="ok", scale="0-3", overlap=1, guidelines="", seed=0,
                                   settings={}, items=[])
    assert utc_now()


# -- one claim rule: ratings, imports and claims share it -----------------------------------------------------


def import_rows(store, c: dict, rows: list[tuple[int, int]], now: float) -> int:
    """(annotator id, item id) pairs as finished ratings, the way a CSV import writes them."""
    return store.import_campaign_ratings(c["id"], [
        {"annotator_id": aid, "rater_kind": "human", "item_id": item, "note": None,
         "scores": [{"metric": "misalignment", "score": 1.0}]} for aid, item in rows], source="test", now=now)


def test_item_has_room_is_the_one_rule():
    from db.annotation import item_has_room

    assert item_has_room(1, 0, 2, holds_live_lease=False)
    assert not item_has_room(1, 1, 2, holds_live_lease=False)      # a live lease holds a place
    assert item_has_room(1, 1, 2, holds_live_lease=True)           # ... the holder's own
    assert not item_has_room(2, 0, 2, holds_live_lease=True)       # k finished ratings: full


def test_an_import_counts_live_leases_and_the_rater_keeps_their_place(store):
    from db.annotation import NoRoom

    study(store)
    c = campaign(store, n=1, overlap=2)
    a, b, x = join(store, c, "a"), join(store, c, "b"), join(store, c, "x")
    got = claim(store, c, a, now=0.0)                     # a is rating the one item (lease to t=600)
    item = got["item_id"]
    assert import_rows(store, c, [(b, item)], now=10.0) == 1  # one place left: b's import takes it
    before = store.counts()
    with pytest.raises(NoRoom) as err:                   # a third rater: a still holds a place
        import_rows(store, c, [(x, item)], now=20.0)
    assert (err.value.done, err.value.leased, err.value.overlap) == (1, 1, 2)
    assert store.counts() == before                      # nothing written
    assert rate(store, c, got, a, now=30.0)               # no false "lease expired"
    raters = {r["annotator"] for r in store.campaign_rating_rows(c["id"])}
    assert raters == {"a", "b"}


def test_an_import_takes_an_expired_lease_place_and_the_late_rating_is_lost(store):
    study(store)
    c = campaign(store, n=1, overlap=1)
    a, b = join(store, c, "a"), join(store, c, "b")
    got = claim(store, c, a, now=0.0, lease_s=10)
    assert import_rows(store, c, [(b, got["item_id"])], now=11.0) == 1  # a's lease ran out at t=10
    with pytest.raises(AssignmentError, match="your lease expired"):
        rate(store, c, got, a, now=12.0)


def test_an_import_of_a_rating_the_rater_holds_turns_their_lease_into_it(store):
    study(store)
    c = campaign(store, n=1, overlap=1)
    a = join(store, c, "a")
    got = claim(store, c, a, now=0.0)
    assert import_rows(store, c, [(a, got["item_id"])], now=5.0) == 1   # their own place
    with pytest.raises(AssignmentError, match="done already"):
        rate(store, c, got, a, now=6.0)
    with pytest.raises(AssignmentError, match="rated by this annotator already"):
        import_rows(store, c, [(a, got["item_id"])], now=7.0)
    assert len(store.campaign_rating_rows(c["id"])) == 1


def test_a_lead_who_rated_the_item_cannot_adjudicate_it(store):
    from db.annotation import LeadIsRater

    study(store)
    c = campaign(store, n=1, overlap=2)
    a, b, lead = join(store, c, "a"), join(store, c, "b"), join(store, c, "lead")
    got = claim(store, c, a, now=0.0)
    rate(store, c, got, a, now=1.0)
    held = claim(store, c, b, now=2.0)
    item = got["item_id"]
    with pytest.raises(LeadIsRater, match="the lead rated it"):
        store.add_adjudication(c["id"], item, metric="misalignment", score=2.0, lead_annotator_id=a, now=3.0)
    with pytest.raises(LeadIsRater, match="the lead is rating it now"):
        store.add_adjudication(c["id"], item, metric="misalignment", score=2.0, lead_annotator_id=b, now=3.0)
    assert store.campaign_adjudications(c["id"]) == []
    assert store.add_adjudication(c["id"], item, metric="misalignment", score=2.0, lead_annotator_id=lead, now=3.0)
    assert held is not None
