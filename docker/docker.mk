# Container targets; the top-level Makefile includes this file (`include docker/docker.mk`) and
# provides VENV, PY, STAGE, INPUT, OUT. Each target is one docker command; `make -n` prints it.
#   make docker-build TARGET=cuda|cpu          build tagfold:cuda / tagfold:cpu
#   make docker-train STAGE=2 INPUT=wave       tagfold train in the image (outputs in $(OUT))
#   make docker-eval | docker-bench | docker-shell
#   make container-test                        build + run the CPU image without a Docker engine
DOCKER ?= docker
TARGET ?= cuda
IMAGE ?= tagfold:$(TARGET)
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
# GPUs are passed only where the host has an NVIDIA driver (nvidia-smi on PATH).
NVIDIA_SMI ?= nvidia-smi
DOCKER_GPUS ?= $(if $(shell command -v $(NVIDIA_SMI) 2>/dev/null),--gpus all,)
# Outputs belong to the calling user, not to the image's user.
DOCKER_USER ?= --user $$(id -u):$$(id -g)
DOCKER_RUN = $(DOCKER) run --rm $(DOCKER_GPUS) $(DOCKER_USER) --shm-size=2g \
	-v $(abspath $(OUT)):/out $(if $(wildcard $(DATA)),-v $(abspath $(DATA)):/data:ro,)

.PHONY: docker-build docker-train docker-eval docker-bench docker-shell container-test

docker-build:
	$(DOCKER) build -f docker/Dockerfile --build-arg BASE=$(BASE) -t $(IMAGE) .

docker-train:
	mkdir -p $(OUT)
	$(DOCKER_RUN) $(IMAGE) train --stage $(STAGE) --input $(INPUT) --out /out/train/stage$(STAGE)-$(INPUT) $(TRAIN_ARGS)

docker-eval:
	mkdir -p $(OUT)
	$(DOCKER_RUN) $(IMAGE) evaluate --checkpoint /out/train/stage$(STAGE)-$(INPUT)/best.pt --out /out/eval/stage$(STAGE)-$(INPUT) $(EVAL_ARGS)

# Timed benchmarks in the image; results are saved per machine under $(OUT)/.benchmarks.
docker-bench:
	mkdir -p $(OUT)
	$(DOCKER_RUN) -v $(abspath $(SHARED_DATA)):/shared:ro $(IMAGE) bench \
	  --benchmark-autosave --benchmark-storage=/out/.benchmarks/$$(hostname)-$(TARGET) $(BENCH_ARGS)

docker-shell:
	mkdir -p $(OUT)
	$(DOCKER_RUN) -it -v $(abspath $(SHARED_DATA)):/shared:ro $(IMAGE) shell

container-test:
	SHARED_DATA=$(SHARED_DATA) docker/container-test.sh
