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
FORMAT ?= table
HOST ?= 127.0.0.1
PORT ?= 5000
MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.DEFAULT_GOAL := help
.PHONY: help setup preprocess train evaluate all predict ui test lint clean distclean

help: ## list the targets
	@echo "usage: make TARGET [EXP=experiments/<name>.yaml]"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv and install newstag with its dev tools (once)

$(PROCESSED): $(EXP) $(PKG)/preprocess.py $(PKG)/clean.py $(PKG)/readers.py $(PKG)/config.py | $(STAMP)
	$(NEWSTAG) preprocess $(EXP)

# Written by `newstag preprocess`: the raw input files the split depends on.
-include data/processed/$(NAME)/deps.mk

$(MODEL): $(PROCESSED) $(PKG)/train.py $(PKG)/pipelines.py $(PKG)/bundle.py | $(STAMP)
	$(NEWSTAG) train $(EXP)

$(REPORT): $(MODEL) $(PKG)/evaluate.py | $(STAMP)
	$(NEWSTAG) evaluate $(EXP)

preprocess: $(PROCESSED) ## validate, clean, de-duplicate and split the experiment's data
train: $(MODEL) ## train every task, log the run to MLflow, save models/<exp>/model.joblib
evaluate: $(REPORT) ## score the model on the test split, write reports/<exp>/
all: evaluate ## the main job: preprocess, train and evaluate

predict: $(MODEL) ## tag text: make predict TEXT="..." or INPUT=file.txt|.jsonl|.csv
	@if [ -z "$(TEXT)$(INPUT)" ]; then echo 'give TEXT="..." or INPUT=path' >&2; exit 2; fi
	$(NEWSTAG) predict --model $(MODEL) --format $(FORMAT) $(if $(INPUT),--input "$(INPUT)") $(if $(TEXT),"$$NEWSTAG_TEXT")
predict: export NEWSTAG_TEXT = $(TEXT)

ui: $(STAMP) ## open the MLflow UI on http://127.0.0.1:5000 over the same store
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host $(HOST) --port $(PORT)

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest

lint: $(STAMP) ## check style with ruff
	$(BIN)/ruff check src tests

clean: ## remove generated data, models, reports and MLflow runs
	rm -rf data/processed models reports mlflow.db mlruns mlartifacts

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
