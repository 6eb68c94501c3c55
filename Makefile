# The two commands of the README. Both run setup first (idempotent, fast when nothing changed).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/gdn demo --out out/demo

test: setup
	$(PY) -m pytest -q tests

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build out
