"""The `tagfold` command line as a user meets it: every option documented with its default and
range, bad values refused with one line and the exit code of the README's table, user errors
without a traceback, a closed pipe ending quietly."""
import argparse
import errno
import importlib
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tagfold import cli
from tagfold.pipeline import errors, options

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class _Parsed(Exception):
    pass


def command_parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser `tagfold NAME` builds, caught as it starts parsing."""
    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Parsed

    # on argparse's own class, so a command that builds a plain ArgumentParser is caught too
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module, _, function = cli.COMMANDS[name][0].partition(":")
    with pytest.raises(_Parsed):
        getattr(importlib.import_module(module), function or "main")([])
    return seen[0]


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_option_has_help_default_and_range(name, monkeypatch):
    p = command_parser(name, monkeypatch)
    assert isinstance(p, options.Parser), f"{name}: build the parser with tagfold.pipeline.options.parser"
    formatter = options.HelpFormatter(p.prog)
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help, f"tagfold {name} {flag}: no help text"
        # a numeric option is checked against its documented range, in one place (options.Range)
        assert action.type not in (int, float) or action.choices, \
            f"tagfold {name} {flag}: numeric option without an options.Range"
        if action.option_strings and action.default not in (None, False, "", argparse.SUPPRESS):
            assert "default" in formatter._get_help_string(action), f"tagfold {name} {flag}: default not shown"


def test_help_shows_default_and_range(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["query", "--help"])
    assert e.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "tags per page (default: 50; an integer >= 1)" in help_text


@pytest.mark.parametrize("argv, option, expected", [
    (["train", "--epochs", "0"], "--epochs", "an integer >= 1"),
    (["train", "--width", "0"], "--width", "a number in (0, 4]"),
    (["train", "--batch-size", "-3"], "--batch-size", "an integer >= 1"),
    (["prep-audio", "--manifest", "m", "--out", "o", "--max-seconds", "-1"], "--max-seconds", "a number > 0"),
    (["evaluate", "--checkpoint", "c", "--out", "o", "--batch-tracks", "0"], "--batch-tracks", "an integer >= 1"),
    (["predict", "x.wav", "--checkpoint", "c", "--batch-files", "0"], "--batch-files", "an integer >= 1"),
    (["categorize", "--tags", "t", "--out", "o", "--score-level", "1.5"], "--score-level", "a number in (0, 1)"),
    (["categorize", "--tags", "t", "--out", "o", "--score-level", "-1"], "--score-level", "a number in (0, 1)"),
    (["categorize", "--tags", "t", "--out", "o", "--score-level", "nan"], "--score-level", "a number in (0, 1)"),
    (["pipeline", "--score-level", "nan"], "--score-level", "a number in (0, 1)"),
    (["embed", "--tags", "t", "--stage2", "s", "--out", "o", "--percentile", "0.7"], "--percentile", "(0, 0.5)"),
    (["ingest", "in.txt", "--out", "o", "--max-len", "0"], "--max-len", "an integer >= 1"),
    (["query", "rock", "--page", "0"], "--page", "an integer >= 1"),
    (["demo-data", "--out", "o", "--n", "zero"], "--n", "an integer >= 1"),
    (["labels", "--manifest", "m", "--out", "o", "--threshold", "0"], "--threshold", "a number in (0, 1]"),
])
def test_out_of_range_option_is_one_line_exit_2(argv, option, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # nothing may be written, wherever the command would write
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err and expected in err and argv[-1] in err, err
    assert list(tmp_path.iterdir()) == []


def test_range_check_outside_argparse():
    assert options.COUNT.check(3, "--epochs") == 3
    for bad in (0, -1, 2.5, True, "3", float("nan")):
        with pytest.raises(errors.UsageError, match="--epochs: expected an integer >= 1"):
            options.COUNT.check(bad, "--epochs")
    assert not options.SCORE_LEVEL.contains(float("inf")) and options.SCORE_LEVEL.contains(0.9)


def test_version_and_unknown_command(capsys):
    from tagfold import __version__
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out == f"tagfold {__version__}\n"
    assert cli.main(["nope"]) == errors.EXIT_USAGE and "unknown command 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- user errors

def tagfold(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tagfold.cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory):
    """A small pipeline output folder (tags.parquet, stage2/3.parquet) made in-process."""
    from tagfold.pipeline.tags.run import PipelineConfig, run_pipeline
    from tagfold.pipeline.tags.embed import EmbedConfig

    root = tmp_path_factory.mktemp("run")
    src = root / "tags.txt"
    src.write_text("rock\nhappy rock\nsad songs\nhappyy\n80s pop\nbritish rock\n", encoding="utf-8")
    run_pipeline(root / "out", PipelineConfig(input=str(src), plots=False, embed=EmbedConfig(vectors="glove")))
    return root


def _checkpoint_without_weights(root):
    from tagfold.training import checkpoint as ckpt

    path = root / "bare.pt"
    ckpt.save({"config": {"model": "wave", "width": 0.125, "stage": 2}, "tags": ["rock"]}, path)
    return path


def _a_wav(root):
    import hostile

    return hostile.wav_ok(root / "a.wav", seconds=1.0)


# name -> root -> (argv, exit code, text the one line must hold), for inputs a user gets wrong
USER_ERRORS = {
    "missing input": lambda r: (["pipeline", "--input", r / "nope.txt", "--out", r / "o1"], 1, "nope.txt"),
    "folder as input": lambda r: (["ingest", r / "folder.txt", "--out", r / "o2"], 1, "is a folder"),
    "not Parquet": lambda r: (["categorize", "--tags", r / "not.parquet", "--out", r / "o3"], 1,
                              "not a Parquet file"),
    "missing Parquet": lambda r: (["embed", "--tags", r / "none.parquet", "--stage2", r / "out" / "stage2.parquet",
                                   "--out", r / "o4"], 1, "none.parquet: no such file"),
    "page out of range": lambda r: (["query", "rock", "--out", r / "out", "--page", "99"], 1, "out of range"),
    "no pipeline output": lambda r: (["query", "rock", "--out", r / "empty"], 1, "not found"),
    "unknown selected-tags file": lambda r: (["collapse", "--tags", r / "out" / "tags.parquet", "--out", r / "o5",
                                              "--selected", r / "no.csv"], 1, "no.csv"),
    "score without gold tags": lambda r: (["score", r / "out" / "stage2.parquet"], 1, "none of the"),
    "not a checkpoint": lambda r: (["evaluate", "--checkpoint", r / "not.parquet", "--out", r / "o6"], 1,
                                   "not a tagfold checkpoint"),
    "checkpoint without weights": lambda r: (["predict", _a_wav(r), "--checkpoint", _checkpoint_without_weights(r)],
                                             1, "expected a checkpoint written by `tagfold train`"),
    "bad option value": lambda r: (["demo-data", "--out", r / "o7", "--seconds", "-2"], 2, "a number > 0"),
}


@pytest.mark.parametrize("name", list(USER_ERRORS))
def test_user_error_is_one_line_without_traceback(name, tag_run):
    (tag_run / "not.parquet").write_text("hello")
    (tag_run / "folder.txt").mkdir(exist_ok=True)
    argv, code, text = USER_ERRORS[name](tag_run)
    r = tagfold(*argv)
    assert r.returncode == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and text in r.stderr, r.stderr[-2000:]
    assert len([line for line in r.stderr.splitlines() if line.startswith("tagfold ")]) == 1, r.stderr


def test_closed_pipe_ends_quietly(tag_run):
    r = subprocess.run(f"{sys.executable} -m tagfold.cli query rock --out {tag_run / 'out'} --page-size 1000 "
                       f"| head -1; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash", env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("Stage II") and r.stderr == "", r.stderr
    # the reader left after one line: exit 141 (as SIGPIPE), or 0 when the output fit in the pipe
    assert r.returncode in (0, errors.EXIT_CLOSED_PIPE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of permissions")
def test_unreadable_input_and_read_only_folder(tmp_path):
    src = tmp_path / "tags.txt"
    src.write_text("rock\n")
    src.chmod(0)
    r = tagfold("ingest", src, "--out", tmp_path / "o")
    assert r.returncode == 1 and "Permission denied" in r.stderr and str(src) in r.stderr
    assert "Traceback" not in r.stderr
    src.chmod(0o644)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = tagfold("ingest", src, "--out", ro)
    assert r.returncode == 1 and "Permission denied" in r.stderr and str(ro) in r.stderr
    assert "Traceback" not in r.stderr


def test_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch, capsys):
    """Disk full while a Parquet output is written: path and cause in one line; the atomic write
    leaves neither a partial output nor its temporary file."""
    src = tmp_path / "tags.txt"
    src.write_text("rock\npop\n")
    out = tmp_path / "o"

    def full(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    monkeypatch.setattr(pq, "write_table", full)
    assert cli.main(["ingest", str(src), "--out", str(out)]) == errors.EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(out) in err, err
    assert not [p.name for p in out.iterdir() if p.suffix in (".parquet", ".tmp")]


@pytest.mark.parametrize("err, cause", [(errno.EACCES, "Permission denied"),
                                        (errno.EROFS, "Read-only file system (choose a writable output folder)"),
                                        (errno.ENOSPC, "No space left on device (free some space")])
def test_os_errors_name_the_path_and_cause(err, cause, tmp_path, monkeypatch, capsys):
    """Whoever runs the tests (root reads anything), an OS error while writing an output is one
    line naming the folder and the cause, and the output folder holds no partial file."""
    import tempfile

    src = tmp_path / "tags.txt"
    src.write_text("rock\n")
    out = tmp_path / "o"

    def refuse(*args, dir=None, **kwargs):
        raise OSError(err, os.strerror(err), str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert cli.main(["ingest", str(src), "--out", str(out)]) == errors.EXIT_FAILURE
    line = capsys.readouterr().err
    assert line.startswith(f"tagfold ingest: {out}: {cause}") and line.count("\n") == 1, line
    assert not list(out.glob("*.parquet"))


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_for_another_model_says_what_it_holds(tmp_path):
    from tagfold.training import checkpoint as ckpt
    from tagfold.training import models
    from tagfold.training.evaluate import load_model

    weights = models.build("wave", n_tags=3, width=0.125).state_dict()
    config = {"model": "wave", "width": 0.25, "stage": 2, "input": "wave", "labels": "l.parquet"}
    ckpt.save({"model": weights, "config": config, "tags": ["a", "b", "c"]}, tmp_path / "wide.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"wide\.pt: holds model 'wave' width 0.25 trained on 3 tags"):
        load_model(tmp_path / "wide.pt")
    ckpt.save({"config": config, "tags": ["a"]}, tmp_path / "bare.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"bare\.pt: .*expected"):
        load_model(tmp_path / "bare.pt")
    ckpt.save({"model": weights, "config": {"width": 1.0}, "tags": ["a"]}, tmp_path / "nomodel.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"nomodel\.pt: holds model None .*expected one of the models"):
        load_model(tmp_path / "nomodel.pt")


def test_library_user_errors_are_one_type():
    """Errors the user can fix share one type (the CLI prints them as one line)."""
    from tagfold.pipeline.io import OutputLocked
    from tagfold.pipeline.tags.ingest import IngestError
    from tagfold.training.checkpoint import CheckpointError

    for cls in (OutputLocked, IngestError, CheckpointError):
        assert issubclass(cls, errors.UserError)
    assert OutputLocked("x").exit_code == errors.EXIT_LOCKED


def test_chance_level_evaluate_prints():
    """Random scores' expected macro PR-AUC: one positive among 4 tracks lands at rank j with
    probability 1/4 and scores 1/j; a tag without a positive (or negative) is left out."""
    import numpy as np

    from tagfold.training.evaluate import chance_macro_pr_auc

    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    assert chance_macro_pr_auc(y) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert np.isnan(chance_macro_pr_auc(np.zeros((5, 2))))


def test_readme_exit_code_table_is_the_one_in_errors():
    """One exit-code table: the README's is tagfold.pipeline.errors.EXIT_CODES, row for row."""
    import re

    from tagfold.pipeline.paths import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme.split("| exit code | meaning |", 1)[1], re.M))
    assert {int(code): text for code, text in rows.items()} == errors.EXIT_CODES



def test_train_help_and_refusals_do_not_load_torch():
    """`tagfold train --help` and a refused option answer before torch is imported (seconds saved)."""
    code = ("import sys\nfrom tagfold import cli\nfor argv in (['train', '--help'], ['train', '--epochs', '0']):\n"
            "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout[-500:] + r.stderr[-2000:]
    from tagfold.training import config, models
    assert config.MODEL_NAMES == tuple(models.REGISTRY)
