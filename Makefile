# wasmlab: `make lab` sets up and opens the lab; `make test` sets up and runs the whole suite.
.PHONY: setup lab notebooks test lint bench assets conformance clean

setup:
	./scripts/setup.sh

lab: setup
	.venv/bin/wasmlab samples --quiet
	@echo "The tutorial notebooks: make notebooks (JupyterLab on http://127.0.0.1:8888, its token printed when it starts)"
	@if [ -t 0 ] && [ -t 1 ]; then .venv/bin/wasmlab; \
	else echo "No terminal here for the lab's TUI: run .venv/bin/wasmlab in a terminal (or .venv/bin/wasmlab serve for a browser)"; fi

# JupyterLab on loopback only, as root too, with the index open; it prints its URL with the token.
NOTEBOOK_PORT ?= 8888
notebooks: setup
	.venv/bin/wasmlab samples --quiet
	.venv/bin/jupyter lab --ip 127.0.0.1 --port $(NOTEBOOK_PORT) --no-browser --allow-root \
	  --ServerApp.root_dir="$(CURDIR)/notebooks" --LabApp.default_url=/lab/tree/00-index.ipynb \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

lint: setup
	mkdir -p build/mypy/wasmlab && ln -sfn ../../../runtime build/mypy/wasmlab/runtime && ln -sfn ../../../lab build/mypy/wasmlab/lab
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test: setup lint
	.venv/bin/python -m pytest -q -ra tests

bench: setup
	.venv/bin/wasmlab bench --out docs/bench --markdown docs/bench.md

assets: setup
	./scripts/build-assets.sh

conformance: setup
	./scripts/conformance.sh
