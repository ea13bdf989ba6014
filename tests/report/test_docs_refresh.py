"""``benchmarks/refresh_docs.py`` / :mod:`eads.report.docs`: named blocks in docs/*.md hold their
run directory's ``results.md``, byte for byte.

Oracles: pages assembled by hand around a known ``results.md`` (the refreshed page must equal
them exactly, everything outside the block untouched), and, for the repository itself, each
block's run directory's ``results.md`` on disk (the committed docs must not drift from their
runs; run ``python benchmarks/refresh_docs.py`` when they do). < 1 s.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from eads._errors import CheckpointError, ConfigError
from eads.report import docs as rdocs

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"demo": "runs/demo", "other": "runs/other"}
TABLE = "| a | b |\n| --- | ---: |\n| x | 1.0 ± 0.1† |\n\n†: capped.\n"
OTHER = "| c |\n| --- |\n| 2 |\n"
BEFORE = "# Page\n\nIntro with `<!-- not a marker -->` and ünïcode.\n\n"
AFTER = "\nNotes after the table.\n\n<!-- an ordinary comment -->\n"


def _begin(name):
    return f"<!-- results:begin {name} -->\n"


def _end(name):
    return f"<!-- results:end {name} -->\n"


def _script():
    spec = importlib.util.spec_from_file_location(
        "refresh_docs", ROOT / "benchmarks" / "refresh_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path):
    """A repository root: two runs with results.md and a plot, and a page with a stale block."""
    for name, table in (("demo", TABLE), ("other", OTHER)):
        run = tmp_path / "runs" / name
        (run / "plots").mkdir(parents=True)
        (run / "results.md").write_text(table, encoding="utf-8")
    (tmp_path / "runs" / "demo" / "plots" / "p.png").write_bytes(b"\x89PNG fake \x00\xff")
    (tmp_path / "docs").mkdir()
    stale = _begin("demo") + "| old | table |\n" + _end("demo")
    (tmp_path / "docs" / "page.md").write_text(BEFORE + stale + AFTER, encoding="utf-8")
    (tmp_path / "docs" / "plain.md").write_text("# No blocks here\n", encoding="utf-8")
    return tmp_path


PLOTS = {
    "runs/demo/plots/p.png": "docs/img/demo_p.png",
    "runs/demo/plots/not_drawn.png": "docs/img/demo_not_drawn.png",
}


def _refresh(root, check=False):
    return rdocs.refresh(root, check=check, names=NAMES, plots=PLOTS)


def _one_sentence(msg: str) -> None:
    assert msg.endswith(".") and "\n" not in msg
    assert not re.search(r"[.;:]\s+[A-Z]", msg), msg


# ---------------------------------------------------------------- (a) refresh replaces the block


def test_refresh_replaces_exactly_the_block_and_is_idempotent(repo):
    page, plain = repo / "docs" / "page.md", repo / "docs" / "plain.md"
    plain_mtime = plain.stat().st_mtime_ns
    page.chmod(0o640)

    report = _refresh(repo)

    want = BEFORE + _begin("demo") + TABLE + _end("demo") + AFTER
    assert page.read_bytes() == want.encode("utf-8")
    assert report.stale_blocks == [("docs/page.md", "demo")]
    assert report.stale_plots == ["docs/img/demo_p.png"]
    assert report.missing_plots == ["runs/demo/plots/not_drawn.png"]
    assert (repo / "docs/img/demo_p.png").read_bytes() == b"\x89PNG fake \x00\xff"
    assert not (repo / "docs/img/demo_not_drawn.png").exists()
    assert plain.stat().st_mtime_ns == plain_mtime  # a page without blocks is not rewritten

    mtime = page.stat().st_mtime_ns
    again = _refresh(repo)
    assert again.in_sync and not again.stale_blocks and not again.stale_plots
    assert page.read_bytes() == want.encode("utf-8") and page.stat().st_mtime_ns == mtime
    assert not list((repo / "docs").rglob(".tmp-*"))  # no temporaries left behind
    assert page.stat().st_mode & 0o777 == 0o640  # the page keeps its permissions


def test_several_blocks_and_a_table_without_final_newline(repo):
    (repo / "runs" / "other" / "results.md").write_text(OTHER.rstrip("\n"), encoding="utf-8")
    text = (
        "top\n"
        + _begin("other")
        + _end("other")  # an empty block
        + "middle\n"
        + _begin("demo")
        + "stale\n"
        + _end("demo")
        + _begin("other")
        + "x\n"
        + _end("other")
    )  # the page ends with the end marker's newline
    (repo / "docs" / "page.md").write_text(text, encoding="utf-8")

    report = _refresh(repo)

    want = (
        "top\n"
        + _begin("other")
        + OTHER
        + _end("other")
        + "middle\n"
        + _begin("demo")
        + TABLE
        + _end("demo")
        + _begin("other")
        + OTHER
        + _end("other")
    )
    assert (repo / "docs" / "page.md").read_text(encoding="utf-8") == want
    assert report.stale_blocks == [("docs/page.md", "other"), ("docs/page.md", "demo")]


def test_render_keeps_text_outside_blocks():
    text = "a\n" + _begin("demo") + "old\n" + _end("demo") + "b"
    new, changed = rdocs.render(text, {"demo": "new\n"}, names=NAMES)
    assert new == "a\n" + _begin("demo") + "new\n" + _end("demo") + "b" and changed == ["demo"]
    assert rdocs.render(new, {"demo": "new\n"}, names=NAMES) == (new, [])


def test_a_marker_shown_as_code_is_text(repo):
    shown = (
        "Write `<!-- results:begin NAME -->` and ``<!-- results:end NAME -->`` around it:\n\n"
        "```markdown\n" + _begin("nope") + "whatever\n" + _end("other") + "```\n\n"
        "~~~\n" + _begin("demo") + "~~~\n"
    )
    page = repo / "docs" / "page.md"
    page.write_text(shown + _begin("demo") + "old\n" + _end("demo"), encoding="utf-8")

    assert [b.name for b in rdocs.find_blocks(page.read_text(), names=NAMES)] == ["demo"]
    _refresh(repo)
    assert page.read_text(encoding="utf-8") == shown + _begin("demo") + TABLE + _end("demo")


# ------------------------------------------------------------------- (b) --check finds drift


def test_check_names_the_stale_block_and_changes_nothing(repo, capsys):
    page = repo / "docs" / "page.md"
    before = page.read_bytes()

    report = _refresh(repo, check=True)

    assert report.stale_blocks == [("docs/page.md", "demo")] and not report.in_sync
    assert page.read_bytes() == before
    assert not (repo / "docs" / "img").exists()

    _refresh(repo)
    assert _refresh(repo, check=True).in_sync
    (repo / "runs" / "demo" / "results.md").write_text(TABLE + "| y | 2 |\n", encoding="utf-8")
    assert _refresh(repo, check=True).stale_blocks == [("docs/page.md", "demo")]


def test_the_script_exits_1_on_drift_and_0_when_in_sync(repo, capsys, monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "refresh", lambda root, check: _refresh(root, check=check))
    page = repo / "docs" / "page.md"
    before = page.read_bytes()

    assert script.main(["--check", "--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "docs/page.md: block demo differs from its run" in out
    assert "docs/img/demo_p.png: not yet copied from its run" in out
    assert "runs/demo/plots/not_drawn.png: not drawn yet, skipped" in out
    assert page.read_bytes() == before

    assert script.main(["--root", str(repo)]) == 0
    assert "docs/page.md: block demo refreshed" in capsys.readouterr().out
    assert script.main(["--check", "--root", str(repo)]) == 0
    assert "docs in sync" in capsys.readouterr().out


# ------------------------------------------------------------------------ (c) bad markers


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_begin("nope") + _end("nope"), "block name 'nope' is unknown"),
        ("<!-- results:begin -->\nx\n<!-- results:end -->\n", "needs a block name"),
        ("a\n" + _begin("demo") + "x\n", "block 'demo' has no '<!-- results:end demo -->'"),
        ("x\n" + _end("demo"), "'<!-- results:end demo -->' has no begin"),
        (_begin("demo") + _begin("other") + _end("other") + _end("demo"), "begins inside"),
        (_begin("demo") + "x\n" + _end("other"), "'<!-- results:end other -->' has no begin"),
        ("see <!-- results:begin demo -->\n" + _end("demo"), "on a line of its own"),
    ],
    ids=["unknown", "unnamed", "no-end", "no-begin", "nested", "mismatched", "inline"],
)
def test_a_bad_marker_is_one_sentence_and_nothing_is_written(repo, text, words):
    good = repo / "docs" / "page.md"
    before = good.read_bytes()
    (repo / "docs" / "zz_bad.md").write_text("# Bad\n\n" + text, encoding="utf-8")

    with pytest.raises(ConfigError) as exc:
        _refresh(repo)

    msg = str(exc.value)
    assert msg.startswith("docs/zz_bad.md line ") and words in msg, msg
    _one_sentence(msg)
    assert good.read_bytes() == before  # every page is parsed before any is written
    assert not (repo / "docs" / "img").exists()


def test_a_run_without_results_md_is_one_sentence(repo, capsys, monkeypatch):
    (repo / "runs" / "demo" / "results.md").unlink()
    with pytest.raises(CheckpointError) as exc:
        _refresh(repo)
    assert "runs/demo/results.md" in str(exc.value) and "'demo'" in str(exc.value)
    _one_sentence(str(exc.value))

    script = _script()
    monkeypatch.setattr(script, "refresh", lambda root, check: _refresh(root, check=check))
    assert script.main(["--root", str(repo)]) == 2
    assert capsys.readouterr().err == f"error: {exc.value}\n"


# ------------------------------------------------------- (d) the committed docs are in sync


def _repo_blocks() -> list[tuple[str, str, str]]:
    """``(page, name, content)`` of every named block in the repository's docs/*.md."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for b in rdocs.find_blocks(text, page.name):
            found.append((page.name, b.name, text[b.start : b.stop]))
    return found


def test_the_repository_docs_hold_their_runs_results():
    blocks = _repo_blocks()
    assert {("attention.md", "attention-full"), ("pde.md", "pde-released")} <= {
        (page, name) for page, name, _ in blocks
    }
    stale = [
        f"docs/{page} block {name}"
        for page, name, content in blocks
        if content != rdocs.run_results(ROOT, name)
    ]
    assert not stale, f"{stale} differ from their run's results.md: run benchmarks/refresh_docs.py"


def test_the_repository_plots_are_copies_of_their_runs():
    stale = [
        dst
        for src, dst in rdocs.PLOTS.items()
        if (ROOT / src).is_file()
        and (not (ROOT / dst).is_file() or (ROOT / src).read_bytes() != (ROOT / dst).read_bytes())
    ]
    assert not stale, f"{stale} differ from their run's plots: run benchmarks/refresh_docs.py"
    assert all((ROOT / d).parent == ROOT / "docs" / "img" for d in rdocs.PLOTS.values())
