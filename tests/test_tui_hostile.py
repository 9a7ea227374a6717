"""Hostile data on every screen of the workbench and the rating room, driven by keys: names, questions,
answers, notes, codes and guidelines holding Rich/Textual markup, terminal escapes (CSI, OSC 8 links,
OSC 52 clipboard writes, DCS), C1 controls, bidi overrides, zero-width and combining characters, wide
CJK and emoji, NUL, line breaks and tabs — written through the store's API, as an older database or a
future importer might hold them. After every key the drawn screen must hold no control character, no
markup read as markup (``Mk[b]Bx[/b]`` stays as typed, never ``MkBx``), no link or click from the data,
and the app must still run. Also: a name's line break never pushes a one-line status out, long names
give way to the numbers, and a question taller than its box scrolls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import DataTable

import db
from emtui.app import create_app
from emtui.room import RoomCampaignsScreen, create_annotator_app
from emtui.screens.answers import AnswersScreen
from emtui.screens.rate import RatingScreen
from engine.annotation.campaigns import create_campaign
from engine.annotation.session import AnnotationSession
from engine.common.hashing import json_hash

HOSTILE = ("Mk[b]Bx[/b]" "Cl[/]oze" "[@click=app.quit]Clk[/]" "[link=file:///etc/passwd]Lnk[/link]"
           "\x1b[31mRED\x1b[0m\x1b[2J" "\x1b]8;;file:///etc/passwd\x1b\\OSC8\x1b]8;;\x1b\\" "\x1b]52;c;ZXZpbA==\x07"
           "\x1bPq#0;2;0\x1b\\" "\x9b31m\x85" "\u202eevil\u202c\u2066iso\u2069" "a\u200bb\u200dc\ufeff"
           "Z\u0336\u0301" "漢字🙂👨\u200d👩\u200d👧" "n\x00ul" "l1\nl2\rl3\tt")
# what would be drawn if the data were read as markup, or what must never reach the terminal
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
READ_AS_MARKUP = ("MkBx", "Cloze")


def build(path: Path) -> None:
    """Two studies whose every name and text is hostile, judged, with a campaign (hostile codes and metric)
    rated by people with hostile names and notes, in disagreement; a job with a hostile kind and payload."""
    with db.open_store(path) as s:
        with s.transaction():
            for k in range(2):
                sid = s.add_study(name=f"S{k}" + HOSTILE, description=HOSTILE, origin="import:" + HOSTILE,
                                  spec_hash=json_hash([k]), spec={"seed": k}, source_path="/p/" + HOSTILE)
                qs = [{"key": f"q{i}" + HOSTILE, "text": HOSTILE * (i + 1), "category": "c" + HOSTILE,
                       "system_prompt": "sys" + HOSTILE} for i in range(3)]
                set_id = s.ensure_eval_set(name="E" + HOSTILE, source="s" + HOSTILE, content_hash=f"h{k}", questions=qs)
                s.link_study_eval_set(sid, set_id, 2)
                qids = [q["id"] for q in s.list_questions(set_id).rows]
                metrics = ["aligned", "coherent", "m" + HOSTILE]
                rubric = s.ensure_rubric(name="R" + HOSTILE, content_hash=f"r{k}", body=HOSTILE,
                                         metrics=[{"name": m, "scale": [0, 100], "higher_is": "better"}
                                                  for m in metrics])
                judges = [s.ensure_judge(name=f"J{j}" + HOSTILE, provider="import", model=f"JM{j}" + HOSTILE,
                                         params={}, params_hash=f"p{k}{j}") for j in range(2)]
                for j in judges:
                    s.link_study_judge(sid, j)
                dataset = s.ensure_dataset(name="D" + HOSTILE, content_hash=f"d{k}", path="/d/" + HOSTILE, n_rows=3)
                for c, role in enumerate(["treatment", "control"]):
                    model = s.ensure_model(name=f"M{k}{c}" + HOSTILE, kind="external", source="s" + HOSTILE)
                    cid = s.add_condition(study_id=sid, name=f"C{c}" + HOSTILE, model_id=model, dataset_id=dataset,
                                          recipe={"role": role}, description=HOSTILE)
                    gids = s.insert_generations([
                        {"question_id": qids[i % 3], "condition_id": cid, "model_id": model, "settings": {},
                         "settings_hash": "h", "seed": 0, "sample_index": i // 3,
                         "response": [HOSTILE, "", "  \t ", HOSTILE * 50][i % 4]} for i in range(12)])
                    s.insert_judgments([
                        {"generation_id": g, "judge_id": j, "rubric_id": rubric, "raw_output": HOSTILE,
                         "scores": {"aligned": float((i * 17 + c * 40) % 101), "coherent": float((i * 29) % 101),
                                    metrics[2]: float(i % 10)}}
                        for j in judges for i, g in enumerate(gids)])
            s.enqueue_job("judge" + HOSTILE, {"x": HOSTILE})
        _generate_job(s)
        # codes and a metric name no create_campaign makes (an older database, another tool's rows)
        study = s.find_study("S0" + HOSTILE)
        gens = [row[0] for row in s.campaign_sample_frame(int(study["id"]))][:8]
        s.create_campaign_rows(study_id=int(study["id"]), name="camp", scale="0-3", overlap=2, seed=0,
                               guidelines="# G" + HOSTILE + "\n\n[x](file:///etc/passwd) " + HOSTILE,
                               settings={"metrics": ["m" + HOSTILE]},
                               items=[{"code": f"K{i}" + HOSTILE, "position": i, "generation_id": g}
                                      for i, g in enumerate(gens)])
        create_campaign(s, name="pairs", study="S0" + HOSTILE, scale="pairwise", n_items=4, overlap=2)
        for who, value in (("Mk[b]Bx[/b]", 0), ("Cl[/]oze", 3)):
            session = AnnotationSession(s, "camp", who)
            for _ in range(4):
                if session.next_item() is None:
                    break
                session.set_note("note Mk[b]Bx[/b] [@click=app.quit]Clk[/] 漢字")
                session.rate(value)


def _generate_job(s) -> None:
    """A running generate job (the newest: highlighted first on the Eval queue) whose answers, prompts,
    settings and reported model name are hostile: what its answers pager and an answer in full show."""
    study = s.find_study("S0" + HOSTILE)
    condition = s.study_conditions(int(study["id"]))[0]
    question = s.questions_of_sets([int(e["id"]) for e in s.study_eval_sets(int(study["id"]))])[0]
    job = s.enqueue_job("generate", {"study": HOSTILE}, progress_total=8)
    assert s.claim_job("worker-g", kinds=["generate"])["id"] == job
    s.report_progress(job, "worker-g", done=4, total=8, note=HOSTILE, rate=1.0,
                      metrics={"tokens_per_s": 12.5, "batch_size": 4, "model": "M" + HOSTILE})
    s.insert_generations([
        {"question_id": question["id"], "condition_id": condition["id"], "model_id": condition["model_id"],
         "settings": {"system_prompt": HOSTILE, "engine": {"model": HOSTILE}}, "settings_hash": "g" + HOSTILE,
         "seed": i, "sample_index": i, "variant": "trigger" if i % 2 else "", "prompt": "P" + HOSTILE,
         "response": [HOSTILE, "", HOSTILE * 50, "  \t "][i], "job_id": job} for i in range(4)])


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.db"
    build(path)
    return path


def drawn(app) -> list[str]:
    """The screen as the terminal gets it, line by line; fails on a link or a click from the data."""
    lines = []
    for strip in app.screen._compositor.render_strips():
        for seg in strip:
            style = seg.style
            if style is not None:
                assert not (style.link and "passwd" in style.link), f"a link from the data: {style.link!r}"
                assert "Clk" not in seg.text or "@click" not in (style.meta or {}), f"a click from the data: {seg!r}"
        lines.append("".join(seg.text for seg in strip))
    return lines


def check(app, where: str) -> list[str]:
    assert app._exception is None, f"{where}: {app._exception!r}"
    lines = drawn(app)
    screen = "\n".join(lines)
    bad = CONTROL.search(screen)
    assert bad is None, f"{where}: control character {bad.group()!r} drawn:\n{screen}"
    for sign in READ_AS_MARKUP:
        assert sign not in screen, f"{where}: data read as markup ({sign!r}):\n{screen}"
    return lines


WORKBENCH = [
    ("studies", ["1", "down", "tab", "down"]),
    ("data", ["2", "v", "v", "down", "tab", "down", "enter", "end", "escape"]),
    ("queue", ["4", "enter", "end", "escape"]),
    # a generate job's answers, one in full; the new evaluation run form over the hostile studies
    ("queue-answers", ["4", "a", "down", "enter", "end", "escape", "escape"]),
    ("eval-form", ["4", "n", "enter", "down", "enter", "tab", "tab", "tab", "tab", "tab", "end", "escape"]),
    ("judges", ["5", "tab"]),
    ("annotate", ["6", "a", "down", "escape"]),
    ("results", ["7", "j", "m", "v", "b", "b", "v", "v", "v", "v", "v", "right", "enter", "m", "enter", "end",
                 "escape", "escape", "n", "escape"]),
    ("help", ["question_mark", "escape"]),
]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_hostile_data_on_every_workbench_screen(hostile_db, size):
    with db.open_store(hostile_db) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            check(app, "start")
            for area, keys in WORKBENCH:
                for key in keys:
                    await pilot.press(key)
                    await pilot.pause()
                    check(app, f"{area} + {key} ({type(app.screen).__name__})")
                    await app.workers.wait_for_complete()  # the summary, computed in a thread


async def test_hostile_data_in_the_rating_room(hostile_db):
    with db.open_store(hostile_db) as store:
        app = create_annotator_app(store, annotator="[@click=app.quit]Clk[/]", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            check(app, "campaigns")
            for keys in (["g"], ["escape"], ["enter"], *[["1", "enter"]] * 3, ["u"], ["escape"], ["n"], ["escape"],
                         ["question_mark"], ["end"], ["escape"], ["tab"], ["end"], ["escape"], ["down", "enter"],
                         ["1", "enter"], ["escape"]):
                await pilot.press(*keys)
                await pilot.pause()
                check(app, f"{keys} ({type(app.screen).__name__})")
            assert app.return_code is None


async def test_a_names_line_break_never_pushes_a_status_line_out(hostile_db):
    with db.open_store(hostile_db) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("7")
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            lines = check(app, "results")
            # the study's name on the first status line, whole or cut; then the judge, view and breakdown line
            assert lines[2].startswith(" Study 1/2 S0Mk[b]Bx[/b]Cl[/]oze"), lines[2]
            assert lines[3].startswith(" judge ") and "view scores" in lines[3], lines[3]
            await pilot.press("v", "v", "v", "v")  # comparisons: "a vs b" in one cell, both ends of it
            await pilot.pause()
            grid = app.screen.query_one("#results-comparisons", DataTable)
            pairs = [grid.get_row_at(i)[0] for i in range(grid.row_count)]
            assert pairs and all("\n" not in p.plain and "\t" not in p.plain for p in pairs), pairs
            await pilot.press("v", "v", "right", "enter")
            await pilot.pause()
            assert isinstance(app.screen, AnswersScreen)
            lines = check(app, "answers")
            assert lines[2].startswith(" Study S0Mk[b]Bx[/b]") and lines[3].startswith(" Judges: "), lines[2:4]


async def test_long_campaign_names_give_way_to_the_scale_and_counts_in_the_room(hostile_db):
    long = "pilot-" + "x" * 150 + "-end"  # a valid campaign name: letters, digits, '-'
    with db.open_store(hostile_db) as store:
        create_campaign(store, name=long, study="S1" + HOSTILE, scale="aligned-coherent", n_items=2)
        app = create_annotator_app(store, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, RoomCampaignsScreen)
            lines = check(app, "campaigns")
            assert "You rated" in lines[2], lines[2]
            row = next(line for line in lines if "pilot-" in line)
            assert "…" in row and "-end" in row and "aligned-coherent" in row and row.rstrip(" │").endswith("0"), row


def make_one_item_study(s, question: str, answer: str) -> None:
    """A study of one question and one answer, and a campaign "one" of that item."""
    with s.transaction():
        sid = s.add_study(name="st", description="", origin="demo", spec_hash="h", spec={})
        set_id = s.ensure_eval_set(name="e", source="demo", content_hash="e",
                                   questions=[{"key": "q", "text": question}])
        qid = s.list_questions(set_id).rows[0]["id"]
        model = s.ensure_model(name="m", kind="external", source="demo")
        cid = s.add_condition(study_id=sid, name="c", model_id=model, recipe={"role": "treatment"})
        s.insert_generations([{"question_id": qid, "condition_id": cid, "model_id": model, "settings": {},
                               "settings_hash": "h", "seed": 0, "sample_index": 0, "response": answer}])
    create_campaign(s, name="one", study="st", scale="0-3", n_items=1)


async def test_a_question_taller_than_its_box_scrolls_in_the_rating_room(tmp_path):
    question = "\n".join(f"Question line {i}." for i in range(1, 41))
    path = tmp_path / "q.db"
    with db.open_store(path) as s:
        make_one_item_study(s, question, "An answer.")
        app = create_annotator_app(s, annotator="bob", campaign="one", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RatingScreen)
            box = screen.query_one("#rate-question")
            assert box.max_scroll_y > 0 and "Tab" in str(box.border_subtitle)
            assert "Question line 1." in "\n".join(check(app, "first"))
            assert "Question line 40." not in "\n".join(drawn(app))
            await pilot.press("shift+tab", "end")  # to the question, and its end
            await pilot.pause()
            assert screen.focused is box
            lines = check(app, "scrolled")
            assert "Question line 40." in "\n".join(lines) and "An answer." in "\n".join(lines)
            await pilot.resize_terminal(120, 120)  # room for the whole question: the hint goes
            await pilot.pause()
            await pilot.pause()
            assert box.max_scroll_y == 0 and not box.border_subtitle
            await pilot.press("2", "enter")  # typing rates whatever has the focus
            await pilot.pause()
            assert screen.view is None


async def test_an_empty_answer_says_so_in_the_rating_room(hostile_db):
    """The hostile study's answers include an empty one and one of only spaces: a blank box would read as
    one still loading."""
    with db.open_store(hostile_db) as store:
        app = create_annotator_app(store, annotator="bob", campaign="camp", keymap={})
        seen = set()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            while screen.view is not None:
                answer = "\n".join(drawn(app)[screen.query_one("#rate-answer").region.y:][:3])
                if not screen.view.answer:
                    seen.add("empty")
                    assert "(an empty answer)" in answer, answer
                elif not screen.view.answer.strip():
                    seen.add("spaces")
                    assert "(an answer of only spaces or line breaks)" in answer, answer
                await pilot.press("0", "enter")
                await pilot.pause()
        assert seen == {"empty", "spaces"}


async def test_an_answer_too_long_to_lay_out_is_shown_in_part_and_says_so(tmp_path):
    """A 100,000-line answer (3.7 million characters) kept the room from answering keys for 14 s; the first
    500,000 characters are shown, and the box says how many more there are."""
    from emtui.screens.base import SHOWN_CHARS

    answer = "\n".join(f"line {i} of an answer that goes on" for i in range(100_000))
    path = tmp_path / "long.db"
    with db.open_store(path) as s:
        make_one_item_study(s, "A question.", answer)
        app = create_annotator_app(s, annotator="bob", campaign="one", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RatingScreen) and screen.view.answer == answer
            await pilot.press("end")
            said = f"and {len(answer) - SHOWN_CHARS:,} more characters, not shown"
            for _ in range(100):  # laying out half a million characters takes a while on a busy machine
                await pilot.pause(0.05)
                text = "\n".join(check(app, "end of the answer"))
                if said in text:
                    break
            assert said in text, text
            assert "line 99999 " not in text
            await pilot.press("f", "1", "enter")
            await pilot.pause()
            assert screen.view is None


def test_workbench_full_text_shows_a_huge_text_in_part_and_says_so():
    """The workbench's full-text view lays out at most SHOWN_CHARS characters of a text (a 3.7 MB
    answer kept it from answering keys for 14 s) and says how much more there is."""
    from emtui.screens.base import SHOWN_CHARS
    from emtui.screens.fulltext import FullTextScreen

    body = "x" * (SHOWN_CHARS + 1234)
    text = FullTextScreen("q", [], [("Answer", body)]).content().plain
    assert len(text) < SHOWN_CHARS + 200
    assert "and 1,234 more characters, not shown" in text
