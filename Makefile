# dkimroll: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= demo
DKIMROLL := $(PY) -m dkimroll.cli

.PHONY: setup venv pulumi system-deps demo up preview refresh destroy status check rotate env test test-unit bench clean-demo

setup: venv pulumi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip >&2
	$(PY) -m pip install --quiet -e '.[test]' >&2
	@touch $@

pulumi:
	@bash scripts/ensure-pulumi.sh >/dev/null

system-deps:
	@bash scripts/system-deps.sh

demo: setup
	$(DKIMROLL) up --stack demo
	@$(PY) -m dkimroll.demo_summary
	@$(DKIMROLL) status --stack demo

up preview refresh destroy: setup
	$(DKIMROLL) $@ --stack $(STACK)

status check: setup
	$(DKIMROLL) $@ --stack $(STACK)

# make rotate DOMAIN=example.com [COMPROMISED=1] STACK=prod
rotate: setup
	$(DKIMROLL) rotate $(DOMAIN) --stack $(STACK) $(if $(COMPROMISED),--compromised)

# eval "$(make -s env)" puts the pinned CLI, the venv and the local backend in your shell.
env: setup
	@$(DKIMROLL) env --stack $(STACK)

test: setup system-deps
	$(PY) -m pytest -q

test-unit: venv
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) -m tests.bench.run

clean-demo:
	rm -rf .demo
