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

.PHONY: install test pipeline train evaluate clean

install: $(VENV)/.deps $(VENV)/.editable $(EXT_STAMP)

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
test: install
	$(PY) -m pytest -q tests benchmarks --benchmark-disable $(PYTEST_ARGS)

pipeline: install
	$(TAGFOLD) pipeline --out $(OUT)/tags

# With no DATA, `tagfold train` builds the embedded demo dataset under $(OUT)/demo first.
train: install
	TAGFOLD_OUT=$(OUT) $(TAGFOLD) train --stage $(STAGE) --input $(INPUT) $(if $(DATA),--data $(DATA)) \
	  --out $(OUT)/train/stage$(STAGE)-$(INPUT) $(TRAIN_ARGS)

evaluate: install
	TAGFOLD_OUT=$(OUT) $(TAGFOLD) evaluate --checkpoint $(wildcard $(OUT)/train/stage*-$(INPUT)/best.pt) \
	  --out $(OUT)/eval-$(INPUT) $(EVAL_ARGS)

clean:
	rm -rf build native/_*.c native/*.so $(OUT)

# Container and benchmark-guard targets (kept beside the files they drive).
include docker/docker.mk
include benchmarks/bench.mk
include training/emotify.mk
