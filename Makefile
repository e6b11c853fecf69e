# Thin wrappers over the `tagfold` CLI. `make install` is idempotent: each step is a file
# target, so a second run with nothing changed only checks timestamps (seconds).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TAGFOLD := $(VENV)/bin/tagfold
PYTEST_ARGS ?=
STAGE ?= 2
INPUT ?= wave
OUT ?= out
# A prepared dataset folder (prep/ + labels/); empty = the embedded demo data.
DATA ?=

PYX := $(wildcard native/*.pyx)
EXT_STAMP := $(VENV)/.ext-built

.PHONY: install test mutate pipeline train evaluate experiment checkpoints clean help

install: $(VENV)/.deps $(VENV)/.editable $(EXT_STAMP)  ## create .venv/ with the pinned requirements and tagfold (idempotent)

$(VENV)/.deps: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# A PEP 660 editable install (needed for package_dir mapping) wants a recent pip and setuptools.
	$(PY) -m pip install -q --disable-pip-version-check pip==25.3 setuptools==80.9.0 wheel==0.45.1
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.editable: $(VENV)/.deps setup.py
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  || { echo "make install: building tagfold failed (is a C compiler installed? apt-get install gcc python3-dev)" >&2; exit 1; }
	touch $@ $(EXT_STAMP)

# Rebuild the Cython kernels in place when a .pyx changes (the editable install reads them from native/).
$(EXT_STAMP): $(VENV)/.editable $(PYX)
	$(PY) setup.py -q build_ext --inplace \
	  || { echo "make install: compiling the Cython kernels in native/ failed" >&2; exit 1; }
	touch $@

# The README's test command; CI runs exactly this.
test: install  ## the whole test suite; benchmarks run once as tests (what CI runs)
	$(PY) -m pytest -q tests benchmarks --benchmark-disable $(PYTEST_ARGS)

# On demand, not in CI: needs `$(VENV)/bin/pip install mutmut==2.5.1 whatthepatch`.
mutate: install  ## mutation testing: MODULE=training/inference.py[:LINES] TESTS="tests/test_x.py ..." (tools/mutate.sh)
	@test -n "$(MODULE)" -a -n "$(TESTS)" || { echo "make mutate: set MODULE=path/to/module.py and TESTS=\"tests/test_x.py\"" >&2; exit 2; }
	nice -n 10 tools/mutate.sh $(MODULE) $(TESTS)

pipeline: install  ## the tag pipeline on the embedded default data -> OUT/tags
	$(TAGFOLD) pipeline --out $(OUT)/tags

# With no DATA, `tagfold train` builds the embedded demo dataset under $(OUT)/demo first.
train: install  ## train STAGE (1|2|3) on INPUT (wave|mel), DATA=dir or the demo -> OUT/train/stageSTAGE-INPUT
	TAGFOLD_OUT=$(OUT) $(TAGFOLD) train --stage $(STAGE) --input $(INPUT) $(if $(DATA),--data $(DATA)) \
	  --out $(OUT)/train/stage$(STAGE)-$(INPUT) $(TRAIN_ARGS)

# Every stage trained on INPUT, evaluated together (the same folder as make docker-eval's).
CHECKPOINTS = $(wildcard $(OUT)/train/stage*-$(INPUT)/best.pt)
EVAL_OUT = $(OUT)/eval-$(INPUT)

evaluate: checkpoints install  ## evaluate every stage trained on INPUT -> OUT/eval-INPUT
	TAGFOLD_OUT=$(OUT) $(TAGFOLD) evaluate --checkpoint $(CHECKPOINTS) --out $(EVAL_OUT) $(EVAL_ARGS)

# The thesis's experiment: stages I-III x wave, mel x 3 seeds on DATA or the demo (built under
# OUT/experiment/demo), one report. EXPERIMENT_ARGS=--quick: 2 stages x wave x 1 seed on a small demo.
experiment: install  ## stages x inputs x seeds, compared with intervals -> OUT/experiment/report.{md,html}
	$(TAGFOLD) experiment --out $(OUT)/experiment$(if $(findstring --quick,$(EXPERIMENT_ARGS)),-quick) \
	  $(if $(DATA),--data $(DATA)) $(EXPERIMENT_ARGS)

clean:  ## remove build files, compiled kernels and OUT
	rm -rf build native/_*.c native/*.so $(OUT)

# Checked before anything is installed or run.
checkpoints:
	@test -n "$(CHECKPOINTS)" || { echo "make: no checkpoint under $(OUT)/train/stage*-$(INPUT)/; run make train STAGE=$(STAGE) INPUT=$(INPUT) first" >&2; exit 2; }

help:  ## list these targets
	@echo "make TARGET [STAGE=2] [INPUT=wave] [OUT=out] [DATA=dir]   (tagfold --help lists the commands)"
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 20

# Container and benchmark-guard targets (kept beside the files they drive).
include docker/docker.mk
include benchmarks/bench.mk
include training/emotify.mk
