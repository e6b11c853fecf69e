# Container targets; the top-level Makefile includes this file (`include docker/docker.mk`) and
# provides VENV, PY, STAGE, INPUT, OUT. Each target is one docker command; `make -n` prints it.
#   make docker-build [TARGET=cuda|cpu]        build tagfold:cuda / tagfold:cpu
#   make docker-train STAGE=2 INPUT=wave       tagfold train in the image (outputs in $(OUT))
#   make docker-eval | docker-bench | docker-shell
#   make container-test                        build + run the CPU image without a Docker engine
# One TARGET names the image for every target; it defaults to cuda where the host has an NVIDIA
# driver (nvidia-smi on PATH), else cpu, so build, train, eval and bench agree without TARGET=.
# GPUs are passed only where the host has an NVIDIA driver.
NVIDIA_SMI ?= nvidia-smi
HAS_GPU := $(shell command -v $(NVIDIA_SMI) 2>/dev/null)
TARGET ?= $(if $(HAS_GPU),cuda,cpu)
IMAGE ?= tagfold:$(TARGET)
# The engine: docker, else podman (same command line).
DOCKER ?= $(if $(shell command -v docker 2>/dev/null),docker,$(if $(shell command -v podman 2>/dev/null),podman,docker))
BASE_cuda ?= nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
BASE_cpu ?= python:3.11-slim-bookworm
BASE ?= $(BASE_$(TARGET))
# Host folders mounted into the image: your data (read-only) at /data, outputs at /out, and the
# real shared data that tests and benchmarks read at /shared.
DATA ?= data
OUT ?= out
SHARED_DATA ?= ../shared/data
STAGE ?= 2
INPUT ?= wave
TRAIN_ARGS ?=
EVAL_ARGS ?=
BENCH_ARGS ?=
DOCKER_GPUS ?= $(if $(HAS_GPU),--gpus all,)
# Outputs belong to the calling user, not to the image's user.
DOCKER_USER ?= --user $$(id -u):$$(id -g)
DOCKER_RUN = $(DOCKER) run --rm $(DOCKER_GPUS) $(DOCKER_USER) --shm-size=2g \
	-v $(abspath $(OUT)):/out $(if $(wildcard $(DATA)),-v $(abspath $(DATA)):/data:ro,)

.PHONY: docker-engine docker-image docker-build docker-train docker-eval docker-bench docker-shell container-test

# Checked first, so a missing engine or image is one line saying what to do, not the engine's error.
docker-engine:
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make: no running container engine ($(DOCKER) info failed); start Docker \
	or install podman, or run make container-test, which builds and tests the CPU image without one" >&2; exit 2; }

docker-image: docker-engine
	@$(DOCKER) image inspect $(IMAGE) >/dev/null 2>&1 || { echo "make: image $(IMAGE) is not built; \
	run make docker-build TARGET=$(TARGET)" >&2; exit 2; }

docker-build: docker-engine  ## build the image tagfold:TARGET (cuda or cpu)
	$(DOCKER) build -f docker/Dockerfile --build-arg BASE=$(BASE) -t $(IMAGE) .

docker-train: docker-image  ## tagfold train in the image -> OUT/train/stageSTAGE-INPUT
	mkdir -p $(OUT)
	$(DOCKER_RUN) $(IMAGE) train --stage $(STAGE) --input $(INPUT) --out /out/train/stage$(STAGE)-$(INPUT) $(TRAIN_ARGS)

# The same checkpoints and output folder as make evaluate, seen from inside the image.
DOCKER_CHECKPOINTS = $(patsubst $(OUT)/%,/out/%,$(wildcard $(OUT)/train/stage*-$(INPUT)/best.pt))

docker-eval: docker-image  ## tagfold evaluate in the image -> OUT/eval-INPUT
	@test -n "$(DOCKER_CHECKPOINTS)" || { echo "make: no checkpoint under $(OUT)/train/stage*-$(INPUT)/; \
	run make docker-train STAGE=$(STAGE) INPUT=$(INPUT) first" >&2; exit 2; }
	mkdir -p $(OUT)
	$(DOCKER_RUN) $(IMAGE) evaluate --checkpoint $(DOCKER_CHECKPOINTS) --out /out/eval-$(INPUT) $(EVAL_ARGS)

# Timed benchmarks in the image; results are saved per machine under $(OUT)/.benchmarks.
docker-bench: docker-image  ## the benchmark suite in the image, saved under OUT/.benchmarks
	mkdir -p $(OUT)
	$(DOCKER_RUN) -v $(abspath $(SHARED_DATA)):/shared:ro $(IMAGE) bench \
	  --benchmark-autosave --benchmark-storage=/out/.benchmarks/$$(hostname)-$(TARGET) $(BENCH_ARGS)

docker-shell: docker-image  ## a shell in the image
	mkdir -p $(OUT)
	$(DOCKER_RUN) -it -v $(abspath $(SHARED_DATA)):/shared:ro $(IMAGE) shell

container-test:  ## build the CPU image and run its checks without a Docker engine (podman/buildah)
	SHARED_DATA=$(SHARED_DATA) docker/container-test.sh
