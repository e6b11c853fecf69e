# Benchmark guard; the top-level Makefile includes this file (`include benchmarks/bench.mk`) and
# provides PY, PYTEST_ARGS and the `install` target.
#   make bench           time the suites and save the run as this machine's baseline
#   make bench-compare   time them again; fail if any got > BENCH_TOLERANCE % slower than the
#                        newest saved baseline of this machine (BENCH_STAT=median|mean|min)
# Runs are kept per host (.benchmarks/<hostname>/): timings only compare on one machine.
# The guard is pytest-benchmark's own (--benchmark-compare, --benchmark-compare-fail). The one
# thing it lacks: with no saved run it only warns and passes, so that case is checked first.
BENCH_HOST ?= $(shell hostname)
BENCH_STORAGE ?= .benchmarks/$(BENCH_HOST)
BENCH_TOLERANCE ?= 20
BENCH_STAT ?= median
BENCH_PYTEST = $(PY) -m pytest benchmarks --benchmark-only --benchmark-storage=$(BENCH_STORAGE) $(PYTEST_ARGS)
BENCH_GUARD = --benchmark-compare --benchmark-compare-fail=$(BENCH_STAT):$(BENCH_TOLERANCE)%

.PHONY: bench bench-compare

bench: install  ## time the benchmark suites; save the run as this machine's baseline
	$(BENCH_PYTEST) --benchmark-autosave

bench-compare: install  ## time them again; fail on a benchmark > BENCH_TOLERANCE (20) % slower than the baseline
	@test -n "$$(find $(BENCH_STORAGE) -name '*.json' 2>/dev/null)" || { \
	  echo "bench-compare: no baseline under $(BENCH_STORAGE); run 'make bench' on this machine first" >&2; exit 2; }
	$(BENCH_PYTEST) $(BENCH_GUARD)
