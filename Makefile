# newstag: `make` lists the targets. Every stage is a real file target, so an unchanged stage
# does not run again, and every target that needs Python bootstraps the virtual environment.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEWSTAG := $(BIN)/newstag

EXP ?= experiments/default.yaml
NAME := $(basename $(notdir $(EXP)))
PROCESSED := data/processed/$(NAME)/manifest.json
MODEL := models/$(NAME)/model.joblib
REPORT := reports/$(NAME)/metrics.json
PKG := src/newstag
BENCH_STAMP := $(VENV)/.bench-installed
# The public corpora: ../shared/datasets when present, else data/raw (see `newstag download`).
NEWSTAG_DATA_DIR ?= $(if $(wildcard ../shared/datasets),$(abspath ../shared/datasets),data/raw)
export NEWSTAG_DATA_DIR
BENCH_EXPS ?= 20newsgroups 20newsgroups_stripped bbc_news ag_news financial_phrasebank \
	financial_phrasebank_with_duplicates econ_news_tone hyperpartisan \
	econ_news_tone_binary econ_news_tone_ordinal econ_news_tone_lexicon \
	financial_phrasebank_lexicon econ_news_tone_transfer 20newsgroups_multilabel
BENCH_INPUTS := $(BENCH_EXPS:%=data/processed/%/manifest.json)
FORMAT ?= table
HOST ?= 127.0.0.1
PORT ?= 5000
SERVE_PORT ?= 5001
MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.DEFAULT_GOAL := help
.PHONY: help setup preprocess train evaluate all golden search predict promote serve ui test lint clean distclean bench bench-quick bench-scale

help: ## list the targets
	@echo "usage: make TARGET [EXP=experiments/<name>.yaml]"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv and install newstag with its dev tools (once)

# Stages for any experiments/<name>.yaml: real file targets, so unchanged stages do not re-run.
data/processed/%/manifest.json: experiments/%.yaml $(PKG)/preprocess.py $(PKG)/data/clean.py $(PKG)/data/readers.py $(PKG)/data/corpora.py $(PKG)/data/stream.py $(PKG)/data/hashsplit.py $(PKG)/config.py | $(STAMP)
	$(NEWSTAG) preprocess $<

# Written by `newstag preprocess`: the raw input files each split depends on.
-include $(wildcard data/processed/*/deps.mk)

models/%/model.joblib: data/processed/%/manifest.json $(PKG)/train.py $(PKG)/models/pipelines.py $(PKG)/models/bundle.py $(PKG)/models/compact.py $(PKG)/models/streaming.py | $(STAMP)
	$(NEWSTAG) train experiments/$*.yaml

reports/%/metrics.json: models/%/model.joblib $(PKG)/evaluate.py $(PKG)/report.py $(PKG)/templates/report.html.j2 | $(STAMP)
	$(NEWSTAG) evaluate experiments/$*.yaml

.PRECIOUS: data/processed/%/manifest.json models/%/model.joblib

# A model whose bytes, or whose compact form's bytes, no longer match the sha256 in its sidecar
# (or with no sidecar: a save that was cut short) is out of date, whatever its timestamp says:
# FORCE makes Make retrain it.
sha_in_sidecar = grep -qF "\"sha256\": \"$$(sha256sum "$(1)" | cut -d' ' -f1)\"" "$(2)" 2>/dev/null
model_ok = $(shell f='$(1)'; [ -f "$$f" ] && [ -f "$$f.compact.npz" ] && $(call sha_in_sidecar,$$f,$$f.json) && $(call sha_in_sidecar,$$f.compact.npz,$$f.json) && echo ok)
$(foreach model,$(sort $(MODEL) models/default/model.joblib),$(eval $(model): $(if $(call model_ok,$(model)),,FORCE)))
FORCE:
.PHONY: FORCE

preprocess: $(PROCESSED) ## validate, clean, de-duplicate and split the experiment's data
train: $(MODEL) ## train every task, log the run to MLflow, save models/<exp>/model.joblib
evaluate: $(REPORT) ## score the model on the test split, write reports/<exp>/
all: evaluate ## the main job: preprocess, train and evaluate

# After a deliberate change to the sample corpus, the default experiment or the pipelines: the
# sample model's test scores and labels that a fresh clone must reproduce (tests/e2e).
golden: reports/default/metrics.json | $(STAMP) ## rewrite tests/e2e/golden_sample.json from the default experiment's model
	$(BIN)/python scripts/golden.py

JOBS ?= 1
search: $(PROCESSED) ## search the experiment's `search:` spaces (JOBS=N in parallel), write experiments/<exp>.best.yaml
	$(NEWSTAG) search $(EXP) --jobs $(JOBS)

# TEXT and INPUT reach the command only through the environment, unexpanded ($(value ...)), and
# are quoted by the shell: news text is full of `$5bn`, backticks and quotes. Make would expand
# them (running any $(shell ...) in them) to export them as they are, so they are not exported.
unexport TEXT INPUT
predict: $(MODEL) ## tag text: make predict TEXT="..." or INPUT=file.txt|.jsonl|.csv
	@args=(); \
	if [ -n "$$NEWSTAG_INPUT" ]; then args+=(--input "$$NEWSTAG_INPUT"); fi; \
	if [ -n "$$NEWSTAG_TEXT" ]; then args+=(-- "$$NEWSTAG_TEXT"); fi; \
	if [ $${#args[@]} -eq 0 ]; then echo 'give TEXT="..." or INPUT=path' >&2; exit 2; fi; \
	$(NEWSTAG) predict --model $(MODEL) --format $(FORMAT) "$${args[@]}"
predict: export NEWSTAG_TEXT = $(value TEXT)
predict: export NEWSTAG_INPUT = $(value INPUT)

promote: $(REPORT) ## alias the newest registered version `champion` if it beats the champion (FORCE=1: anyway)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) promote $(EXP) $(if $(FORCE),--force)

# The venv's bin goes first on PATH: MLflow starts uvicorn by name.
serve: | $(STAMP) ## serve models:/newstag-<exp>@champion over HTTP on 127.0.0.1:5001 (SERVE_PORT=)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) promote $(EXP) --check
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) \
	$(BIN)/mlflow models serve -m models:/newstag-$(NAME)@champion --env-manager local \
		--host $(HOST) --port $(SERVE_PORT) --workers 1

ui: | $(STAMP) ## the MLflow UI on http://127.0.0.1:5000 over the same store; prints the link to the runs
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) ui $(EXP) --host $(HOST) --port $(PORT)

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

LOAD ?= 1000000

bench: $(BENCH_INPUTS) models/default/model.joblib models/financial_phrasebank/model.joblib | $(BENCH_STAMP) ## newstag vs baseline, fastText, VADER on the public corpora, plus a streaming load test
	$(NEWSTAG) bench $(BENCH_EXPS:%=experiments/%.yaml) --out reports/bench
	$(NEWSTAG) bench --load $(LOAD) --model models/default/model.joblib --out reports/bench
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) promote experiments/default.yaml
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) bench --serve 200 --out reports/bench

bench-quick: $(BENCH_INPUTS) models/default/model.joblib models/financial_phrasebank/model.joblib | $(BENCH_STAMP) ## the same on small subsets, to check the bench code (minutes)
	$(NEWSTAG) bench --quick $(BENCH_EXPS:%=experiments/%.yaml) --out reports/bench-quick
	$(NEWSTAG) bench --load 20000 --model models/default/model.joblib --out reports/bench-quick
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) promote experiments/default.yaml
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(NEWSTAG) bench --serve 200 --out reports/bench-quick

SCALE_GB ?= 0.5,1,2,4
bench-scale: | $(STAMP) ## streaming training on synthetic corpora of SCALE_GB GB (built under data/scale/): MB/s and peak memory per size
	$(NEWSTAG) bench --scale $(SCALE_GB) --out reports/bench-scale

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest

lint: $(STAMP) ## check style with ruff
	$(BIN)/ruff check src tests

clean: ## remove generated data, models, reports and MLflow runs
	rm -rf data/processed models reports mlflow.db mlruns mlartifacts

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
