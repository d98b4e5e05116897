# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and
# start a Docker engine when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test engine venv lint benchmark clean-images

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU torch first: any other torch spec pulls multi-GB CUDA builds
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

engine:
	@bash docker/ensure-engine.sh

test: venv engine
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# Real PyPI sdists that ship their tests; override with `make demo DEMO_SOURCES="..."`.
DEMO_SOURCES ?= pypi:toolz==1.0.0 pypi:inflection==0.5.1 pypi:more-itertools==10.5.0
SYNTH_SOURCES ?= pypi:toolz==1.0.0 pypi:inflection==0.5.1
DEMO_OUT ?= demo-output

demo: venv engine
	$(BIN)/swelego doctor || true
	$(BIN)/swelego env build $(DEMO_SOURCES) --run-tests
	$(BIN)/swelego data synth $(SYNTH_SOURCES) --out $(DEMO_OUT)/synth --max-candidates 10 --workers 2
	$(BIN)/swelego data audit $(DEMO_OUT)/synth/dataset
	$(BIN)/swelego data rollout $(DEMO_OUT)/synth --policy oracle --noise 0.3 --samples-per-task 2 --workers 2 \
		--out $(DEMO_OUT)/rollouts
	$(BIN)/swelego data filter $(DEMO_OUT)/rollouts --keep resolved,semi_resolved --out $(DEMO_OUT)/trajectories

lint: venv
	$(BIN)/ruff check .

benchmark: venv engine
	$(BIN)/python benchmarks/sandbox.py
	$(BIN)/python benchmarks/validation.py
	$(BIN)/python benchmarks/rollout.py

clean-images: venv engine
	$(BIN)/swelego sandbox gc --all
