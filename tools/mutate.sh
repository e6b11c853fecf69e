#!/usr/bin/env bash
# Mutation testing on demand (not part of CI): mutate one module, run only the tests that cover it.
#
#   tools/mutate.sh training/evaluate.py tests/test_evaluate.py
#   tools/mutate.sh pipeline/labels.py:100-130,150-170 tests/test_labels.py   # only those lines
#
# Needs mutmut 2.x in the venv (`.venv/bin/pip install mutmut==2.5.1 whatthepatch`; not in requirements.txt:
# the project does not need it to run). mutmut 2.x rewrites the file it mutates, so it works on a
# copy of the tree in a temporary folder (printed; MUTATE_DIR=... picks it): the working tree is
# never touched, and tagfold is imported from the copy (PYTHONPATH ahead of the editable install).
# Afterwards: cd <copy>/tree && mutmut results; mutmut show ID. CPU-heavy: run it under nice.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: tools/mutate.sh MODULE_FILE TEST_FILE... (e.g. training/evaluate.py tests/test_evaluate.py)" >&2
    exit 2
fi
module=${1%%:*}; lines=${1#"$module"}; lines=${lines#:}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv/bin
[ -f "$root/$module" ] || { echo "tools/mutate.sh: $module: no such file under $root" >&2; exit 2; }
"$venv/python" -c "import mutmut" 2>/dev/null \
    || { echo "tools/mutate.sh: mutmut is not installed: $venv/pip install mutmut==2.5.1" >&2; exit 2; }
work=${MUTATE_DIR:-$(mktemp -d /tmp/tagfold-mutate.XXXXXX)}
# a fresh copy each run (mutmut's cache, .mutmut-cache, would not see changed tests)
rm -rf "$work/tree"
mkdir -p "$work/tree"
tar -C "$root" --exclude ./.venv --exclude ./.git --exclude ./out --exclude ./.benchmarks --exclude __pycache__ \
    --exclude ./.mutmut-cache -cf - . | tar -C "$work/tree" -xf -
# tagfold.native / .pipeline / .training live in top-level folders (setup.py's package_dir):
# links inside the copy's tagfold/ give the same import names from the copy.
for sub in native pipeline training; do ln -sfn "../$sub" "$work/tree/tagfold/$sub"; done
export PYTHONPATH=$work/tree${PYTHONPATH:+:$PYTHONPATH}
export TAGFOLD_SHARED_DATA=${TAGFOLD_SHARED_DATA:-$(cd "$root/.." && pwd)/shared/data}
export PATH=$venv:$PATH
cd "$work/tree"
python - "$module" <<'PY'
import sys, tagfold.cli, importlib, pathlib
mod = sys.argv[1][:-3].replace("/", ".")
for folder in ("native", "pipeline", "training"):
    if mod.startswith(folder + "."):
        mod = "tagfold." + mod
got = pathlib.Path(importlib.import_module(mod).__file__).resolve()
assert str(got).startswith(str(pathlib.Path.cwd().resolve())), f"{mod} imports from {got}, not the copy"
PY
only=()
if [ -n "$lines" ]; then
    # a patch that "adds" exactly those lines: mutmut --use-patch-file mutates only them
    python - "$module" "$lines" > "$work/lines.patch" <<'PY'
import difflib, sys
path, spans = sys.argv[1], sys.argv[2]
keep = set()
for span in spans.split(","):
    lo, _, hi = span.partition("-")
    keep |= set(range(int(lo), int(hi or lo) + 1))
new = open(path).read().splitlines(keepends=True)
old = [line for i, line in enumerate(new, 1) if i not in keep]
sys.stdout.writelines(difflib.unified_diff(old, new, fromfile=path, tofile=path))
PY
    only=(--use-patch-file "$work/lines.patch")
fi
echo "mutating $module${lines:+ lines $lines} in $work/tree (tests: $*)" >&2
set +e
mutmut run --paths-to-mutate "$module" "${only[@]}" --tests-dir tests --no-progress --simple-output \
    --runner "python -m pytest -x -q -p no:cacheprovider --benchmark-disable $*"
status=$?
set -e
mutmut results
echo "copy kept in $work/tree: cd there and 'mutmut show ID' for a survivor's diff" >&2
exit $status
