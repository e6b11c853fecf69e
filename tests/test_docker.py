"""The container files: rendered `make -n` commands of docker/docker.mk, the Dockerfile, .dockerignore.

Commands are checked as the argv bash would hand to docker (bash expands the rendered line),
so quoting and $(id -u) substitutions are checked as they would really run.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from tagfold.pipeline.paths import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"


def make_n(tmp_path: Path, target: str, *assignments: str) -> list[str]:
    """Lines `make -n TARGET` prints, through a makefile that provides what the Makefile does."""
    wrapper = tmp_path / "wrapper.mk"
    wrapper.write_text(
        "SHELL := /bin/bash\nVENV ?= .venv\nPY := $(VENV)/bin/python\nSTAGE ?= 2\nINPUT ?= wave\nOUT ?= out\n"
        "install:\n"
        f"include {PROJECT_ROOT}/docker/docker.mk\ninclude {PROJECT_ROOT}/benchmarks/bench.mk\n"
    )
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(wrapper), target, *assignments],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )
    return [line for line in result.stdout.replace("\\\n", " ").splitlines() if line.strip()]


def argv(line: str) -> list[str]:
    """The argv bash would build from a rendered recipe line."""
    out = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + line], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


def docker_argv(lines: list[str], verb: str) -> list[str]:
    runs = [argv(line) for line in lines if line.startswith(f"docker {verb}")]
    assert len(runs) == 1, f"expected one `docker {verb}` line in {lines}"
    return runs[0]


def after_image(args: list[str], image: str) -> list[str]:
    assert image in args, args
    return args[args.index(image) + 1:]


def mounts(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-v"]


def test_docker_train_renders_tagfold_train_with_stage_input_and_mounts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = make_n(tmp_path, "docker-train", "STAGE=2", "INPUT=wave", f"DATA={data}", "OUT=out",
                   "NVIDIA_SMI=/nonexistent/nvidia-smi")
    args = docker_argv(lines, "run")
    assert args[:3] == ["docker", "run", "--rm"]
    command = after_image(args, "tagfold:cpu")   # no NVIDIA driver: the CPU image
    assert command[:5] == ["train", "--stage", "2", "--input", "wave"]
    assert command[5:7] == ["--out", "/out/train/stage2-wave"]
    assert f"{PROJECT_ROOT}/out:/out" in mounts(args)
    assert f"{data}:/data:ro" in mounts(args)
    assert "--gpus" not in args
    # Outputs must belong to the caller, not the image's user.
    assert args[args.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert "mkdir -p out" in lines


def test_stage_and_input_are_passed_through(tmp_path):
    args = docker_argv(make_n(tmp_path, "docker-train", "STAGE=3", "INPUT=mel", "TRAIN_ARGS=--epochs 5",
                              "TARGET=cuda"), "run")
    command = after_image(args, "tagfold:cuda")
    assert command[:5] == ["train", "--stage", "3", "--input", "mel"]
    assert command[-2:] == ["--epochs", "5"]


def test_gpus_are_passed_only_when_nvidia_smi_exists(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with_gpu = docker_argv(make_n(tmp_path, "docker-train", f"NVIDIA_SMI={fake}"), "run")
    without = docker_argv(make_n(tmp_path, "docker-train", "NVIDIA_SMI=/nonexistent/nvidia-smi"), "run")
    assert with_gpu[with_gpu.index("--gpus") + 1] == "all"
    assert "--gpus" not in without
    # one TARGET, defaulting by the host, names the image for build and run alike
    assert "tagfold:cuda" in with_gpu and "tagfold:cpu" in without
    built = docker_argv(make_n(tmp_path, "docker-build", "NVIDIA_SMI=/nonexistent/nvidia-smi"), "build")
    assert built[built.index("-t") + 1] == "tagfold:cpu"


def test_engine_and_image_are_checked_before_running(tmp_path):
    lines = make_n(tmp_path, "docker-train", "TARGET=cpu")
    run = next(i for i, line in enumerate(lines) if line.startswith("docker run"))
    checks = " ".join(lines[:run])
    assert "docker info" in checks and "make container-test" in checks
    assert "docker image inspect tagfold:cpu" in checks and "make docker-build TARGET=cpu" in checks


def test_missing_data_folder_is_not_mounted(tmp_path):
    args = docker_argv(make_n(tmp_path, "docker-train", f"DATA={tmp_path / 'absent'}"), "run")
    assert not any(m.endswith(":/data:ro") for m in mounts(args))


@pytest.mark.parametrize("target, base", [("cuda", r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+"),
                                          ("cpu", r"python:3\.11-slim-bookworm")])
def test_docker_build_picks_base_by_target(tmp_path, target, base):
    args = docker_argv(make_n(tmp_path, "docker-build", f"TARGET={target}"), "build")
    assert args[args.index("-f") + 1] == "docker/Dockerfile"
    assert args[args.index("-t") + 1] == f"tagfold:{target}"
    build_arg = args[args.index("--build-arg") + 1]
    assert re.fullmatch(f"BASE={base}", build_arg), build_arg
    assert args[-1] == "."


def test_docker_eval_bench_shell(tmp_path):
    out = tmp_path / "out"
    for stage in (1, 2):
        (out / "train" / f"stage{stage}-mel").mkdir(parents=True)
        (out / "train" / f"stage{stage}-mel" / "best.pt").write_bytes(b"")
    evaluate = after_image(docker_argv(make_n(tmp_path, "docker-eval", "INPUT=mel", f"OUT={out}", "TARGET=cuda"),
                                       "run"), "tagfold:cuda")
    # the checkpoints and output folder of `make evaluate`, as the image sees them
    assert evaluate == ["evaluate", "--checkpoint", "/out/train/stage1-mel/best.pt", "/out/train/stage2-mel/best.pt",
                        "--out", "/out/eval-mel"]

    bench_args = docker_argv(make_n(tmp_path, "docker-bench", "TARGET=cpu"), "run")
    bench = after_image(bench_args, "tagfold:cpu")
    assert bench[0] == "bench" and "--benchmark-autosave" in bench
    storage = [a for a in bench if a.startswith("--benchmark-storage=/out/.benchmarks/")]
    assert storage and storage[0].endswith("-cpu")
    # make's abspath keeps symbolic links, so compare without resolving them
    assert f"{os.path.abspath(PROJECT_ROOT.parent / 'shared' / 'data')}:/shared:ro" in mounts(bench_args)

    shell_args = docker_argv(make_n(tmp_path, "docker-shell", "TARGET=cuda"), "run")
    assert "-it" in shell_args and after_image(shell_args, "tagfold:cuda") == ["shell"]


def test_container_test_target_runs_the_script(tmp_path):
    lines = make_n(tmp_path, "container-test")
    assert any(line.endswith("docker/container-test.sh") for line in lines), lines
    assert os.access(PROJECT_ROOT / "docker" / "container-test.sh", os.X_OK)


def test_bench_targets_save_per_machine_and_compare(tmp_path):
    host = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    bench = argv(make_n(tmp_path, "bench")[0])
    assert "--benchmark-autosave" in bench and f"--benchmark-storage=.benchmarks/{host}" in bench
    lines = make_n(tmp_path, "bench-compare", "BENCH_TOLERANCE=15")
    compare = argv(next(line for line in lines if "--benchmark-compare" in line))
    assert f"--benchmark-storage=.benchmarks/{host}" in compare
    assert compare[-2:] == ["--benchmark-compare", "--benchmark-compare-fail=median:15%"]


def test_makefile_includes_the_container_and_bench_targets():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"^include docker/docker\.mk$", makefile, re.M)
    assert re.search(r"^include benchmarks/bench\.mk$", makefile, re.M)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_base_is_a_build_arg_and_runs_as_non_root():
    rows = dockerfile_instructions()
    assert rows[0][0] == "ARG" and rows[0][1].startswith("BASE=")
    froms = [rest for keyword, rest in rows if keyword == "FROM"]
    assert froms and all(rest.split()[0] == "${BASE}" for rest in froms)
    users = [rest for keyword, rest in rows if keyword == "USER"]
    assert users[-1] not in ("root", "0"), "the image must end as a non-root user"
    volumes = " ".join(rest for keyword, rest in rows if keyword == "VOLUME")
    assert '"/data"' in volumes and '"/out"' in volumes
    entrypoint = [rest for keyword, rest in rows if keyword == "ENTRYPOINT"]
    assert entrypoint == ['["tagfold-entrypoint"]']
    assert any("-r /opt/tagfold/requirements.txt" in rest for keyword, rest in rows if keyword == "RUN")
    assert any("build_ext --inplace" in rest for keyword, rest in rows if keyword == "RUN")


def test_entrypoint_dispatches_to_tagfold(tmp_path):
    # Run the entry script with a fake `tagfold` and `python` on PATH; it must exec them with argv intact.
    for name in ("tagfold", "python"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        fake.chmod(0o755)
    script = (PROJECT_ROOT / "docker" / "entrypoint.sh").read_text().replace("cd /opt/tagfold", f"cd {tmp_path}")
    assert str(tmp_path) in script
    entry = tmp_path / "entrypoint.sh"
    entry.write_text(script)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def run(*args):
        return subprocess.run(["sh", str(entry), *args], env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert run("train", "--stage", "2", "--input", "wave") == "tagfold train --stage 2 --input wave"
    assert run() == "tagfold --help"
    assert run("test", "benchmarks") == "python -m pytest -q --benchmark-disable benchmarks"
    assert run("test") == "python -m pytest -q --benchmark-disable tests benchmarks"
    assert run("bench", "-k", "jaro") == "python -m pytest benchmarks --benchmark-only -k jaro"


def test_dockerignore_keeps_data_outputs_and_artefacts_out():
    patterns = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for required in (".git", ".venv", "out", "data", "build", "**/*.so", ".benchmarks"):
        assert required in patterns, required
    # pipeline/data holds package data the image needs: only the top-level data/ may be ignored.
    assert not any(p.startswith("**/data") or p.startswith("pipeline") for p in patterns)
