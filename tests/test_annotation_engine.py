"""engine/annotation/ on real SQLite files: scales, stratified seeded campaigns with opaque codes,
blind sessions (rate, skip, flag, note, undo / edit with history, active time, leases), pairwise
side swaps, and agreement (α, κ, win rates) on campaigns whose answer is known."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest

from engine.annotation.adjudication import adjudicate, disagreements
from engine.annotation.agreement import agreement_report, agreement_rows, kappa_rows, pairwise_win_rates
from engine.annotation.campaigns import create_campaign
from engine.annotation.errors import AnnotationError, LeaseLost
from engine.annotation.scales import SCALES, get_scale
from engine.annotation.session import AnnotationSession
from engine.results.synthetic import SyntheticSpec, make_synthetic_study


class Clock:
    """A hand-moved clock (for active time, and as the wall clock of leases)."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def syn(store):
    make_synthetic_study(store, SyntheticSpec(answers_per_condition=30, questions=10))
    return store


def make(store, name="c", scale="0-3", n_items=12, **kw):
    return create_campaign(store, name=name, study="synthetic", scale=scale, n_items=n_items, **kw)


def rate_all(store, campaign, who, value, kind="human") -> int:
    s = AnnotationSession(store, campaign, who, kind)
    n = 0
    while s.next_item() is not None:
        s.rate(value(s) if callable(value) else value)
        n += 1
    return n


# -- scales -------------------------------------------------------------------------------------------------


def test_scales_parse_typed_keys():
    s = get_scale("0-100")
    assert s.parse("73") == 73.0 and s.parse("100") == 100.0 and s.parse("007") == 7.0
    for bad, why in (("101", "not on the 0-100 scale"), ("", "type a score"), ("7a", "not a number"),
                     ("7.5", "not a whole number"), ("-1", "not on the")):
        value, err = s.check(bad)
        assert value is None and why in err, (bad, err)
    assert s.accepts_prefix("7") and s.accepts_prefix("10") and not s.accepts_prefix("101")
    assert not get_scale("1-5").accepts_prefix("0") and get_scale("1-5").accepts_prefix("5")
    assert get_scale("0-3").parse("3") == 3.0
    with pytest.raises(ValueError, match="not on the 0-3 scale"):
        get_scale("0-3").parse("4")
    assert get_scale("binary").parse("1") == 1.0
    with pytest.raises(ValueError):
        get_scale("binary").parse("2")
    ac = get_scale("aligned-coherent")
    assert ac.metrics == ("aligned", "coherent")
    assert ac.parse_all("73/90") == {"aligned": 73.0, "coherent": 90.0} == ac.parse_all("73 90")
    assert ac.format({"aligned": 73.0, "coherent": 90.0}) == "73/90"
    with pytest.raises(ValueError, match="expected 2 score"):
        ac.parse_all("73")
    pw = get_scale("pairwise")
    assert pw.pairwise and pw.parse("0") == 0.0 and pw.parse("2") == 2.0
    with pytest.raises(ValueError):
        pw.parse("3")
    for scale in SCALES.values():
        assert scale.help and "\n" not in scale.help and scale.levels


# -- campaigns ----------------------------------------------------------------------------------------------


def test_sampling_is_stratified_and_seeded(syn):
    a = make(syn, "a", n_items=30, seed=7)
    make(syn, "b", n_items=30, seed=7)
    other = make(syn, "other", n_items=30, seed=8)
    items = {n: syn.campaign_items(syn.find_campaign(n)["id"]) for n in ("a", "b", "other")}
    gens = {n: sorted(i["generation_id"] for i in items[n]) for n in items}
    assert gens["a"] == gens["b"] and gens["a"] != gens["other"]       # same seed, same answers
    assert Counter(i["condition"] for i in items["a"]) == {"base": 10, "control": 10, "treatment": 10}
    assert a["settings"]["sample"]["per_stratum"] == {"base": 10, "control": 10, "treatment": 10}
    assert other["settings"]["strata"] == ["condition"]
    # uneven: 31 items over 3 conditions; every condition represented
    odd = make(syn, "odd", n_items=31, seed=1)
    assert sorted(odd["settings"]["sample"]["per_stratum"].values()) == [10, 10, 11]
    per = create_campaign(syn, name="per", study="synthetic", scale="binary", per_stratum=4,
                          strata="condition,category")
    assert len(syn.campaign_items(per["id"])) == 12
    only = make(syn, "only", n_items=6, conditions=["treatment"])
    assert {i["condition"] for i in syn.campaign_items(only["id"])} == {"treatment"}


def test_codes_are_opaque_and_unique(syn):
    c = make(syn, n_items=90)
    items = syn.campaign_items(c["id"])
    codes = [i["code"] for i in items]
    assert len(set(codes)) == 90
    assert all(re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{2}", x) for x in codes)
    leaks = {str(i["generation_id"]) for i in items} | {"base", "control", "treatment", "synthetic"}
    assert not any(leak.upper() in code for code in codes for leak in leaks if len(leak) > 2)
    # positions are shuffled: not in generation order, not grouped by condition
    conds = [i["condition"] for i in items]
    assert conds != sorted(conds)
    assert [i["generation_id"] for i in items] != sorted(i["generation_id"] for i in items)
    # another campaign on the same answers gets other codes
    again = make(syn, "again", n_items=90)
    assert set(codes).isdisjoint(i["code"] for i in syn.campaign_items(again["id"]))


@pytest.mark.parametrize("kw, message", [
    ({"n_items": 500}, "study 'synthetic' has 90 answers; asked for 500"),
    ({"name": "c"}, "campaign 'c' exists"),
    ({"study": "nope"}, "no study named 'nope'"),
    ({"scale": "0-7"}, "unknown scale '0-7'"),
    ({"overlap": 0}, "overlap must be"),
    ({"per_stratum": 3}, "either a number of items or a number per stratum"),
    ({"n_items": None, "per_stratum": 31}, "stratum 'base' of study 'synthetic' has 30 answers; asked for 31"),
    ({"strata": ["colour"]}, "unknown stratum 'colour'"),
    ({"conditions": ["nope"]}, "study 'synthetic' has no condition 'nope'"),
    ({"name": "bad name"}, "campaign name 'bad name' is not valid"),
    ({"scale": "0-3", "pairwise": True}, "pairwise campaign uses the pairwise scale"),
    ({"judge_metric": "nope"}, "have no metric 'nope'"),
])
def test_campaign_errors_are_one_line_and_write_nothing(syn, kw, message):
    make(syn, "c", n_items=3)
    before = syn.counts()
    args = {"name": "new", "study": "synthetic", "scale": "0-3", "n_items": 3, **kw}
    with pytest.raises(AnnotationError) as err:
        create_campaign(syn, **args)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert syn.counts() == before


def test_guidelines_from_a_file(syn, tmp_path):
    f = tmp_path / "guide.md"
    f.write_text("# Rate misalignment\n\n3 = severe.\n", encoding="utf-8")
    c = make(syn, guidelines=f)
    assert c["guidelines"].startswith("# Rate misalignment")
    view = AnnotationSession(syn, "c", "ann").next_item()
    assert view.guidelines == c["guidelines"]


# -- sessions -------------------------------------------------------------------------------------------------


def test_the_view_is_blind(syn):
    c = make(syn, n_items=12)
    s = AnnotationSession(syn, c["name"], "ann")
    view = s.next_item()
    item = syn.campaign_item_by_code(c["id"], view.code)
    _, qid, response = syn.generation_by_id(item["generation_id"])
    assert view.answer == response  # the answer text itself, and nothing about where it came from
    fields = {k: v for k, v in dataclasses.asdict(view).items() if k not in ("answer", "question")}
    text = json.dumps(fields)
    for secret in ("base", "control", "treatment", "synthetic", "judge", "model", "condition", "checkpoint",
                   f'"{item["generation_id"]}"', f'"{qid}"'):
        assert secret not in text, secret
    assert set(dataclasses.asdict(view)) == {
        "code", "number", "total", "question", "system_prompt", "answer", "left", "right", "guidelines", "scale",
        "metrics", "help", "resumed", "editing", "current", "note", "flagged"}
    assert view.number == 1 and view.total == 12 and view.answer and view.question
    hidden = make(syn, "hidden", n_items=3, hide_progress=True)
    assert AnnotationSession(syn, hidden["name"], "ann").next_item().total is None


def test_untrusted_text_is_stripped(store):
    make_synthetic_study(store, SyntheticSpec(answers_per_condition=2, questions=1, conditions=["only"]))
    gid = store.export_answers_page(limit=1)[0]["generation_id"]
    store.conn.execute("UPDATE generations SET response = ? WHERE id = ?",
                       ("ok\x1b[31mRED\x1b[0m\x1b]0;title\x07 done\x07", gid))
    create_campaign(store, name="c", study="synthetic", scale="0-3", n_items=2)
    s = AnnotationSession(store, "c", "ann")
    seen = []
    while (v := s.next_item()) is not None:
        seen.append(v.answer)
        s.rate(0)
    assert "okRED done" in seen and not any("\x1b" in a or "\x07" in a for a in seen)


def test_rate_skip_flag_note_and_progress(syn):
    c = make(syn, n_items=6, overlap=1)
    s = AnnotationSession(syn, "c", "ann")
    v1 = s.next_item()
    assert s.next_item().code == v1.code  # asking again gives the same held item
    s.set_note("odd tone")
    s.flag()
    (rid,) = s.rate(keys="2")
    row = syn.campaign_rating_rows(c["id"])[0]
    assert ((row["code"], row["score"], row["note"], row["flagged"], row["source"])
            == (v1.code, 2.0, "odd tone", 1, "tui"))
    v2 = s.next_item()
    assert v2.number == 2 and v2.code != v1.code
    s.skip(note="empty answer")
    v3 = s.next_item()
    assert v3.code not in (v1.code, v2.code)
    with pytest.raises(AnnotationError, match="not on the 0-3 scale"):
        s.rate(keys="9")
    s.rate(3)
    p = s.progress()
    assert (p["mine_done"], p["mine_skipped"], p["total_items"], p["done"], p["target"]) == (2, 1, 6, 2, 6)
    assert p["completion"] == pytest.approx(2 / 6)
    with pytest.raises(AnnotationError, match="call next_item"):
        s.rate(1)


def test_a_returning_annotator_gets_their_item_back(syn):
    make(syn, n_items=6)
    first = AnnotationSession(syn, "c", "ann").next_item()
    later = AnnotationSession(syn, "c", "ann")  # the TUI was closed and opened again
    view = later.next_item()
    assert view.code == first.code and view.resumed is True
    assert AnnotationSession(syn, "c", "other").next_item().code != first.code  # overlap 1: it is held


def test_lease_expiry_hands_the_item_over(syn):
    make(syn, n_items=1, overlap=1, lease_s=60)
    wall = Clock(1000.0)
    a = AnnotationSession(syn, "c", "a", wall=wall)
    b = AnnotationSession(syn, "c", "b", wall=wall)
    va = a.next_item()
    assert b.next_item() is None
    wall.t += 61  # a went for coffee
    vb = b.next_item()
    assert vb.code == va.code
    with pytest.raises(LeaseLost, match="lease expired"):
        a.rate(1)
    b.rate(2)
    assert a.next_item() is None


def test_touch_renews_the_lease(syn):
    make(syn, n_items=1, overlap=1, lease_s=60)
    wall = Clock(0.0)
    a = AnnotationSession(syn, "c", "a", wall=wall, renew_s=10)
    b = AnnotationSession(syn, "c", "b", wall=wall)
    a.next_item()
    for _ in range(10):  # 100 s of activity, longer than the 60 s lease
        wall.t += 10
        a.touch()
    assert b.next_item() is None
    a.rate(1)


def test_active_time_leaves_out_idle_gaps(syn):
    c = make(syn, n_items=3)
    clock = Clock(0.0)
    s = AnnotationSession(syn, "c", "ann", clock=clock)
    s.next_item()           # t = 0: the item is shown
    for t in (10, 200, 230):  # 10 s reading; then 190 s idle (not counted); 30 s more
        clock.t = t
        s.touch()
    clock.t = 240           # 10 s to decide
    assert s.active_ms() == 40_000
    s.rate(1)
    row = syn.campaign_rating_rows(c["id"])[0]
    assert row["active_ms"] == 50_000
    assert syn._one("SELECT started_at FROM ratings WHERE id = ?", (row["rating_id"],))["started_at"]


def test_undo_and_edit_keep_history(syn):
    make(syn, n_items=12)
    clock = Clock(0.0)
    s = AnnotationSession(syn, "c", "ann", clock=clock)
    codes = []
    for value in (0, 1, 2):
        codes.append(s.next_item().code)
        s.rate(value)
    held = s.next_item()  # a fourth item is leased; undo must not lose it
    back = s.undo()
    assert back.editing and back.code == codes[-1] and back.current == {"misalignment": 2.0}
    back2 = s.undo()
    assert back2.code == codes[-2] and back2.current == {"misalignment": 1.0}
    clock.t += 5
    s.set_note("misread it")
    assert s.rate(3)  # edits the reopened rating
    assert s.next_item().code == held.code
    recent = s.recent()
    assert [r.code for r in recent] == list(reversed(codes))
    edited = next(r for r in recent if r.code == codes[1])
    assert edited.scores == {"misalignment": 3.0} and edited.note == "misread it" and edited.edited
    hist = s.history(codes[1])
    assert [(h["old_score"], h["new_score"], h["new_note"], h["active_ms"]) for h in hist] == \
        [(1.0, 3.0, "misread it", 5000)]
    assert s.edit(codes[0], 1, flagged=True) is True
    assert s.edit(codes[0], 1) is False
    assert [h["new_flagged"] for h in s.history(codes[0])] == [1]
    with pytest.raises(AnnotationError, match="not among your last 10"):
        s.edit("ZZZZ-ZZ", 1)
    s.rate(0)
    for _ in range(8):
        s.next_item()
        s.rate(1)
    assert len(s.recent()) == 10 and codes[0] not in [r.code for r in s.recent()]
    assert sum(1 for _ in iter(s.undo, None)) == 10  # at most 10 back


def test_a_model_name_never_rates_as_a_human(syn):
    make(syn, n_items=3)
    AnnotationSession(syn, "c", "gpt-4o", kind="model")
    with pytest.raises(AnnotationError, match="registered as a model rater"):
        AnnotationSession(syn, "c", "gpt-4o")


def test_pairwise_sides_are_randomised_and_choices_unswapped(syn):
    c = create_campaign(syn, name="pw", study="synthetic", pairwise=True, n_items=40, seed=3)
    items = {i["code"]: i for i in syn.campaign_items(c["id"])}
    assert {i["swap"] for i in items.values()} == {0, 1}
    for i in items.values():
        assert i["condition"] != i["condition_b"]
        qa, qb = syn.generation_by_id(i["generation_id"])[1], syn.generation_by_id(i["generation_b_id"])[1]
        assert qa == qb  # the same question
    s = AnnotationSession(syn, "pw", "ann")
    seen = {0: 0, 1: 0}
    while (v := s.next_item()) is not None:
        it = items[v.code]
        a, b = syn.generation_by_id(it["generation_id"])[2], syn.generation_by_id(it["generation_b_id"])[2]
        assert (v.left, v.right) == ((b, a) if it["swap"] else (a, b)) and v.answer is None
        s.rate(keys="1")  # always "left is more misaligned"
        seen[it["swap"]] += 1
    rows = {r["code"]: r for r in syn.campaign_rating_rows(c["id"])}
    for code, r in rows.items():
        swapped = items[code]["swap"]
        assert r["shown_choice"] == 1 and r["swapped"] == swapped
        assert r["choice"] == ("b" if swapped else "a") and r["score"] == (2.0 if swapped else 1.0)
    assert seen[0] and seen[1]
    # undo shows the rater's own side back
    assert s.undo().current == {"more_misaligned": 1.0}


# -- agreement --------------------------------------------------------------------------------------------


def test_identical_humans_agree_perfectly_and_models_are_not_humans(syn):
    c = make(syn, "c", scale="0-3", n_items=20, overlap=3)

    def truth(session):
        return syn.campaign_item_by_code(c["id"], session.current.code)["position"] % 4

    for who in ("a", "b", "c"):
        rate_all(syn, "c", who, truth)
    rate_all(syn, "c", "bot", lambda s: 3 - truth(s), kind="model")  # a model rater that disagrees
    rows = agreement_rows(syn, "c", n_resamples=200)
    humans = [r for r in rows if r["raters"] == "humans"]
    assert {r["level"] for r in humans} == {"ordinal", "interval"}
    for r in humans:
        assert r["alpha"] == pytest.approx(1.0) and r["ci_low"] == pytest.approx(1.0)
        assert (r["campaign"], r["condition"], r["metric"], r["n_items"]) == ("c", "all", "misalignment", 20)
    assert not any("bot" in r["raters"] for r in rows)
    kap = kappa_rows(syn, "c")
    assert {(k["a"], k["b"]) for k in kap} == {("a", "b"), ("a", "c"), ("b", "c")}
    assert all(k["kappa"] == pytest.approx(1.0) and k["weights"] == "quadratic" and k["n"] == 20 for k in kap)
    assert disagreements(syn, "c") == []
    by_cond = agreement_rows(syn, "c", n_resamples=100, by_condition=True, levels=["ordinal"])
    assert {r["condition"] for r in by_cond} == {"all", "base", "control", "treatment"}


def test_humans_vs_panel_and_each_judge(syn):
    c = make(syn, "h", scale="0-100", n_items=30, overlap=2)
    assert c["settings"]["judge_metrics"] == {"aligned": "aligned"}
    judge_a = {}
    for item in syn.campaign_items(c["id"]):
        for j in syn.generation_judgments(item["generation_id"]):
            if j["judge_model"] == "judge-a-model" and j["metric"] == "aligned":
                judge_a[item["code"]] = j["score"]
    for who in ("x", "y"):  # both humans agree exactly with judge a
        rate_all(syn, "h", who, lambda s: judge_a[s.current.code])
    rows = {(r["raters"], r["level"]): r for r in agreement_rows(syn, "h", n_resamples=200)}
    assert rows[("humans", "interval")]["alpha"] == pytest.approx(1.0)
    assert rows[("humans-vs-judge-a-model", "interval")]["alpha"] == pytest.approx(1.0)
    assert rows[("humans-vs-judge-a-model", "interval")]["n_items"] == 30
    panel = rows[("humans-vs-panel", "interval")]
    other = rows[("humans-vs-judge-b-model", "interval")]
    assert 0.0 < other["alpha"] < 1.0 and other["alpha"] < panel["alpha"] < 1.0
    assert panel["ci_low"] <= panel["alpha"] <= panel["ci_high"]
    report = agreement_report(syn, "h", n_resamples=100)
    assert report["campaign"] == "h" and report["agreement"] and report["kappa"] and report["win_rates"] == []


def test_misalignment_scale_is_compared_with_the_em_metric_on_a_common_range(syn):
    c = make(syn, "m", scale="0-3", n_items=20, overlap=1)
    assert c["settings"]["judge_metrics"] == {"misalignment": "aligned"}
    # one human whose 0-3 rating follows judge a's 0-100 'aligned' score (reversed): α is high
    scores = {}
    for item in syn.campaign_items(c["id"]):
        for j in syn.generation_judgments(item["generation_id"]):
            if j["judge_model"] == "judge-a-model" and j["metric"] == "aligned":
                scores[item["code"]] = round((100 - j["score"]) / 100 * 3)
    rate_all(syn, "m", "solo", lambda s: scores[s.current.code])
    rows = {(r["raters"], r["level"]): r for r in agreement_rows(syn, "m", n_resamples=100)}
    assert rows[("humans", "ordinal")]["alpha"] is None  # one human: α among humans is undefined
    assert rows[("humans-vs-judge-a-model", "ordinal")]["alpha"] > 0.8


def test_pairwise_win_rates(syn):
    c = create_campaign(syn, name="pw", study="synthetic", pairwise=True, n_items=20,
                        conditions=["base", "treatment"])
    items = {i["code"]: i for i in syn.campaign_items(c["id"])}

    def pick_treatment(s):
        it = items[s.current.code]
        treatment_is_a = it["condition"] == "treatment"
        left_is_a = not it["swap"]
        return "1" if treatment_is_a == left_is_a else "2"

    rate_all(syn, "pw", "ann", pick_treatment)
    rows = {r["condition"]: r for r in pairwise_win_rates(syn, "pw", n_resamples=500)}
    assert rows["treatment"]["win_rate"] == 1.0 and rows["treatment"]["wins"] == 20
    assert rows["base"]["win_rate"] == 0.0 and rows["base"]["losses"] == 20
    assert (rows["treatment"]["ci_low"], rows["treatment"]["ci_high"]) == (1.0, 1.0)
    create_campaign(syn, name="tie", study="synthetic", pairwise=True, n_items=10)
    rate_all(syn, "tie", "ann", 0)
    assert {r["win_rate"] for r in pairwise_win_rates(syn, "tie", n_resamples=200)} == {0.5}
    assert agreement_report(syn, "pw", n_resamples=100)["win_rates"]
    with pytest.raises(AnnotationError, match="not pairwise"):
        pairwise_win_rates(syn, make(syn, "plain", n_items=2))


def test_disagreements_and_adjudication(syn):
    c = make(syn, "d", scale="0-3", n_items=4, overlap=2)
    rate_all(syn, "d", "a", 0)
    rate_all(syn, "d", "b", lambda s: 3 if syn.campaign_item_by_code(c["id"], s.current.code)["position"] == 0 else 1)
    rows = disagreements(syn, "d")
    assert len(rows) == 1 and rows[0]["spread"] == 3.0
    assert len(disagreements(syn, "d", threshold=0.5)) == 4
    aid = adjudicate(syn, "d", rows[0]["code"], value="2", lead="lead", note="both half right")
    assert aid and disagreements(syn, "d")[0]["adjudicated"] == 2.0
    with pytest.raises(AnnotationError, match="no item"):
        adjudicate(syn, "d", "NOPE-00", value=1, lead="lead")
    with pytest.raises(AnnotationError, match="not on the 0-3 scale"):
        adjudicate(syn, "d", rows[0]["code"], value=7, lead="lead")
    AnnotationSession(syn, "d", "gpt", kind="model")
    with pytest.raises(AnnotationError, match="model rater"):
        adjudicate(syn, "d", rows[0]["code"], value=1, lead="gpt")


# -- hostile numbers, names and leads ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("inf", "not a number"), ("-inf", "not a number"), ("Infinity", "not a number"), ("nan", "not a number"),
    ("1e400", "not a finite number"), (float("inf"), "not a finite number"), (float("nan"), "not a finite number"),
    (10**400, "not on the"), ("9" * 5000, "not on the"), ("1_0", "not a number"), ("٣", "not a number"),
    ("\x1b[31m2", "not a number"),
])
def test_scores_must_be_finite_plain_numbers(bad, why):
    for scale in SCALES.values():
        value, err = scale.check(bad)
        assert value is None and why in err and "\n" not in err and "\x1b" not in err, (scale.name, bad, err)
        assert len(err) < 120


def test_finite_scores_reach_the_session_and_adjudication_as_errors(syn):
    make(syn, "d", n_items=2, overlap=2)
    s = AnnotationSession(syn, "d", "a")
    s.next_item()
    for bad in ("inf", "1e400", float("inf"), {"misalignment": float("nan")}):
        with pytest.raises(AnnotationError, match="not a"):
            s.rate(bad)
    assert s.rate("2")
    code = s.recent()[0].code
    with pytest.raises(AnnotationError, match="not a finite number"):
        adjudicate(syn, "d", code, value="1e400", lead="lead")


@pytest.mark.parametrize("kw, message", [
    ({"lease_s": float("inf")}, "the lease (seconds) must be from 60 to 604800"),
    ({"lease_s": float("nan")}, "not nan"),
    ({"lease_s": 59}, "1 minute to 7 days"),
    ({"lease_s": 7 * 86400 + 1}, "1 minute to 7 days"),
    ({"overlap": 101}, "overlap must be a whole number from 1 to 100"),
    ({"seed": 2**32}, "seed must be a whole number from 0 to 4294967295"),
    ({"seed": -1}, "seed must be"),
    ({"n_items": 10**7}, "items must be a whole number from 1 to 1000000"),
    ({"n_items": 2.5}, "items must be a whole number"),
])
def test_campaign_numbers_have_sensible_ranges(syn, kw, message):
    before = syn.counts()
    with pytest.raises(AnnotationError) as err:
        create_campaign(syn, **{"name": "new", "study": "synthetic", "scale": "0-3", "n_items": 3, **kw})
    assert message in str(err.value)
    assert syn.counts() == before


def test_compare_to_names_the_judge_metric_or_says_none_is_possible(store):
    from engine.annotation.campaigns import judge_comparison

    make_synthetic_study(store, SyntheticSpec(name="noem", em=None, metrics=("helpful",), answers_per_condition=5,
                                              questions=3))
    make_synthetic_study(store, SyntheticSpec(name="nojudge", judges=[], answers_per_condition=5, questions=3))
    plain = create_campaign(store, name="plain", study="noem", scale="0-3", n_items=3)
    line = judge_comparison(store, plain)["line"]
    assert line.startswith("no human-vs-judge agreement will be possible for misalignment")
    assert "score helpful, not misalignment" in line and "--compare-to" in line
    assert plain["settings"]["judge_metrics"] == {}
    named = create_campaign(store, name="named", study="noem", scale="0-3", n_items=3, compare_to="helpful")
    assert named["settings"]["judge_metrics"] == {"misalignment": "helpful"}
    assert judge_comparison(store, named)["line"].startswith("human ratings are compared with the judges' helpful")
    with pytest.raises(AnnotationError, match="have no metric 'aligned' \\(metrics: helpful\\)"):
        create_campaign(store, name="x", study="noem", scale="0-3", n_items=3, compare_to="aligned")
    # a study with no judges and no rubric: nothing to compare with, said plainly
    none = create_campaign(store, name="none", study="nojudge", scale="0-3", n_items=3)
    assert "study 'nojudge' has no judges' metrics" in judge_comparison(store, none)["line"]
    with pytest.raises(AnnotationError, match="no judges' metrics to compare with"):
        create_campaign(store, name="y", study="nojudge", scale="0-3", n_items=3, compare_to="aligned")
    pw = create_campaign(store, name="pw", study="noem", pairwise=True, n_items=2)
    assert "pairwise" in judge_comparison(store, pw)["line"]
    # the named comparison is the one the agreement uses; without one there is none, as said
    for name in ("plain", "named"):
        for who, v in (("a", 0), ("b", 3)):
            rate_all(store, name, who, lambda s, v=v: v if s.current.code < "M" else 1)
    assert {r["raters"] for r in agreement_rows(store, "plain", n_resamples=50)} == {"humans"}
    assert {r["raters"] for r in agreement_rows(store, "named", n_resamples=50)} >= {"humans", "humans-vs-panel"}


def test_a_rater_cannot_adjudicate_a_disagreement_they_are_part_of(syn):
    make(syn, "d", scale="0-3", n_items=2, overlap=2)
    rate_all(syn, "d", "alice", 0)
    rate_all(syn, "d", "bob", 3)
    code = disagreements(syn, "d")[0]["code"]
    before = syn.counts()
    with pytest.raises(AnnotationError, match="'bob' rated it; a disagreement is resolved by someone who is not"):
        adjudicate(syn, "d", code, value=2, lead="bob")
    assert syn.counts() == before
    assert adjudicate(syn, "d", code, value=2, lead="carol")
    assert next(r for r in disagreements(syn, "d") if r["code"] == code)["adjudicated_by"] == "carol"


@pytest.mark.parametrize("name, why", [
    ("", "needs a name"), ("   ", "needs a name"), ("a\x1b[2Jb", "control or invisible character (U+001B)"),
    ("evil\u202egnp", "U+202E"), ("zero\u200bwidth", "U+200B"), ("two\nlines", "U+000A"),
    ("x" * 101, "longer than 100"),
])
def test_annotator_names_are_plain_text(syn, name, why):
    make(syn, "d", n_items=2)
    before = syn.counts()
    with pytest.raises(AnnotationError, match=re.escape(why)):
        AnnotationSession(syn, "d", name)
    assert syn.counts() == before
    assert AnnotationSession(syn, "d", "Zoë Ng (lab 2)").annotator["name"] == "Zoë Ng (lab 2)"


def test_notes_are_plain_text_of_sensible_length(syn, tmp_path):
    make(syn, "d", n_items=2)
    s = AnnotationSession(syn, "d", "a")
    s.next_item()
    for bad, why in (("\x1b]52;c;aGk=\x07copy", "control character (U+001B)"), ("a\u202eb", "(U+202E)"),
                     ("x" * 10_001, "at most 10000")):
        with pytest.raises(AnnotationError, match=re.escape(why)):
            s.set_note(bad)
        with pytest.raises(AnnotationError, match=re.escape(why)):
            s.rate(1, note=bad)
    s.set_note("two\nlines\twith a tab")
    s.rate(1)
    assert s.recent()[0].note == "two\nlines\twith a tab"
    big = tmp_path / "big.md"
    big.write_text("x" * 1_000_001, encoding="utf-8")
    with pytest.raises(AnnotationError, match="at most 1000000"):
        make(syn, "g", n_items=2, guidelines=big)
