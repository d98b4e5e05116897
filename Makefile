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

# The demo: the data build on embedded defaults (configs/data/demo.yaml: real PyPI sdists, a
# local git history, the oracle policy), then SFT, a verifier and TTS@k on its output, with the
# tiny CPU presets. Every step resumes; rerunning `make demo` redoes nothing that is complete.
# The verifier learns from half of the instances and TTS scores only the others (`tts score`
# checks the two sets are disjoint).
DEMO_OUT ?= demo-output
TTS_SAMPLES ?= 4
# The SFT checkpoint itself then runs in the loop (policy=hf: transformers generation in this
# process, no server) on a few of the held-out tasks, with few turns and short replies to keep it
# quick. A ~0.3M-parameter model trained for 40 steps writes no working tool call: its resolve
# rate of about 0 is the honest number, and the report says policy=hf with the model's path.
HF_TASKS ?= 2

demo: venv engine
	$(BIN)/swelego doctor || true
	$(BIN)/swelego data build configs/data/demo.yaml --out $(DEMO_OUT)/data
	$(BIN)/swelego data audit $(DEMO_OUT)/data/tasks
	$(BIN)/swelego sft train configs/sft/tiny-cpu.yaml --data $(DEMO_OUT)/data/sft/trajectories.jsonl \
		--output-dir $(DEMO_OUT)/sft
	$(BIN)/swelego verifier train configs/verifier/tiny-cpu.yaml --data $(DEMO_OUT)/data/trajectories/trajectories.jsonl \
		--output-dir $(DEMO_OUT)/verifier --set data.eval_fraction=0.5
	$(BIN)/swelego tts run --dataset $(DEMO_OUT)/data/tasks --exclude-instances $(DEMO_OUT)/verifier \
		--policy oracle --noise 0.3 --samples $(TTS_SAMPLES) --workers 2 --verifier $(DEMO_OUT)/verifier \
		--out $(DEMO_OUT)/tts
	$(BIN)/swelego tts score $(DEMO_OUT)/tts --k 1,2,$(TTS_SAMPLES)
	$(BIN)/swelego tts run --dataset $(DEMO_OUT)/data/tasks --exclude-instances $(DEMO_OUT)/verifier \
		--limit $(HF_TASKS) --policy hf --model $(DEMO_OUT)/sft/model --device cpu --samples 1 --max-turns 3 \
		--max-tokens 64 --workers 2 --verifier $(DEMO_OUT)/verifier --out $(DEMO_OUT)/tts-hf
	$(BIN)/swelego tts score $(DEMO_OUT)/tts-hf --k 1
	@echo
	@echo "demo done (TTS with policy=oracle: a pipeline demonstration, not model results)"
	@echo "  dataset card:   $(DEMO_OUT)/data/README.md"
	@echo "  SFT checkpoint: $(DEMO_OUT)/sft/model  (run card $(DEMO_OUT)/sft/run_card.md)"
	@echo "  verifier:       $(DEMO_OUT)/verifier"
	@echo "  TTS report:     $(DEMO_OUT)/tts/report.md  (plot $(DEMO_OUT)/tts/tts_at_k.png)"
	@echo "  policy=hf:      $(DEMO_OUT)/tts-hf/report.md  (the tiny SFT checkpoint itself on $(HF_TASKS) tasks;"
	@echo "                  its ~0% resolved is the honest result of a ~0.3M-parameter model, not a pipeline fault)"

lint: venv
	$(BIN)/ruff check .

benchmark: venv engine
	$(BIN)/python benchmarks/sandbox.py
	$(BIN)/python benchmarks/validation.py
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/sft_prep.py
	$(BIN)/python benchmarks/verifier.py
	$(BIN)/python benchmarks/real_envs.py
	$(BIN)/python benchmarks/official_determinism.py

clean-images: venv engine
	$(BIN)/swelego sandbox gc --all
