# Benchmark guard; the top-level Makefile includes this file (`include benchmarks/bench.mk`) and
# provides PY, PYTEST_ARGS and the `install` target.
#   make bench           time the suites and save the run as this machine's baseline
#   make bench-compare   time them again; fail if any got > BENCH_TOLERANCE % slower than the
#                        newest saved baseline of this machine (median; BENCH_STAT=mean|both)
# Runs are kept per host (.benchmarks/<hostname>/): timings only compare on one machine.
BENCH_HOST ?= $(shell hostname)
BENCH_STORAGE ?= .benchmarks/$(BENCH_HOST)
BENCH_CURRENT ?= .benchmarks/$(BENCH_HOST).current.json
BENCH_TOLERANCE ?= 20
BENCH_STAT ?= median
BENCH_PYTEST = $(PY) -m pytest benchmarks --benchmark-only --benchmark-storage=$(BENCH_STORAGE) $(PYTEST_ARGS)

.PHONY: bench bench-compare

bench: install
	$(BENCH_PYTEST) --benchmark-autosave

bench-compare: install
	@test -n "$$(find $(BENCH_STORAGE) -name '*.json' 2>/dev/null)" || { \
	  echo "bench-compare: no baseline under $(BENCH_STORAGE); run 'make bench' on this machine first" >&2; exit 2; }
	$(BENCH_PYTEST) --benchmark-json=$(BENCH_CURRENT)
	$(PY) benchmarks/compare.py $(BENCH_CURRENT) --storage $(BENCH_STORAGE) --tolerance $(BENCH_TOLERANCE) --stat $(BENCH_STAT)
