"""The README's examples run as written.

Every `tagfold ...` line of a README code block is parsed by its command exactly as written (the
options exist, the values are in range); every `make ...` line names targets and variables make
accepts (`make -n`); the tag pipeline block (pipeline -> query -> score) runs for real, on a small
input in the README's own format and file name. Training examples take minutes and are run by
the training tests with small settings instead.
"""
import argparse
import importlib
import re
import shlex
import subprocess
import sys

import pytest

from tagfold import cli
from tagfold.pipeline.paths import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text("utf-8")


def example_lines() -> list[str]:
    """Command lines of the README's code blocks: continuations joined, comments and optional
    [bracketed] parts dropped, `a; b` and `a && b` split."""
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line)
            line = re.sub(r"\[[^\]]*\]", "", line)
            lines += [part.strip() for part in re.split(r";|&&", line) if part.strip()]
    return lines


TAGFOLD_LINES = [line for line in example_lines() if line.startswith("tagfold ")]
MAKE_LINES = [line for line in example_lines() if line.startswith("make ")]


def test_the_readme_has_examples():
    assert len(TAGFOLD_LINES) >= 10 and len(MAKE_LINES) >= 5
    assert {shlex.split(line)[1] for line in TAGFOLD_LINES} <= set(cli.COMMANDS)


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("line", TAGFOLD_LINES)
def test_tagfold_example_parses_as_written(line, monkeypatch):
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        parse(self, args, namespace)   # SystemExit(2) here: an option the command lacks, or out of range
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    name, *args = shlex.split(line)[1:]
    module, _, function = cli.COMMANDS[name][0].partition(":")
    with pytest.raises(_Parsed):
        getattr(importlib.import_module(module), function or "main")(args)


@pytest.mark.parametrize("line", MAKE_LINES)
def test_make_example_is_a_target(line):
    r = subprocess.run(["make", "-n", *shlex.split(line)[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_tag_pipeline_block_runs(tmp_path, shared):
    """pipeline -> query -> score as the README writes them, in a folder holding a small
    `lastfm_unique_tags.txt` (tag<TAB>count) made of real tags: every gold tag, every tag with
    'happy' in it, and the first 2,000 others."""
    block = next(b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if "tagfold pipeline --input" in b)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.startswith("tagfold ")]
    assert [shlex.split(line)[1] for line in lines] == ["pipeline", "query", "score"]
    real = (shared / "lastfm" / "tags.txt").read_text("utf-8").splitlines()
    gold = [row.split("\t")[0] for row in (shared / "lastfm" / "gold_dev.tsv").read_text("utf-8").splitlines()[1:]]
    tags = list(dict.fromkeys(gold + [t for t in real if "happy" in t] + real[:2000]))
    (tmp_path / "lastfm_unique_tags.txt").write_text("".join(f"{t}\t{i + 1}\n" for i, t in enumerate(tags)),
                                                      encoding="utf-8")
    out = {}
    for line in lines:
        r = subprocess.run([sys.executable, "-m", "tagfold.cli", *shlex.split(line)[1:]], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (line, r.stderr[-3000:])
        out[shlex.split(line)[1]] = r
    assert (tmp_path / "out" / "tags" / "stage3.parquet").exists()
    assert "-- page 2/" in out["query"].stdout
    assert "precision" in out["score"].stdout and "certain gold tags" in out["score"].stderr
