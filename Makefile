# Thin wrapper: every target installs the pinned venv first when needed (seconds if done).
SHELL := /bin/bash
VENV := tools/venv
PYTHON := $(VENV)/bin/python

.PHONY: install test test-fast demo clean

install:
	@bash tools/install.sh

test: install
	@. tools/activate_python.sh && python -m pytest -q tests

test-fast: install
	@. tools/activate_python.sh && python -m pytest -q -m "not slow" tests

demo: install
	@if [ -x egs/demo/run.sh ]; then cd egs/demo && ./run.sh; \
	else echo "make demo: the compression demo (egs/demo) is not there yet"; fi
