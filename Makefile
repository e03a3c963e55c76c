# wasmlab: `make lab` sets up and opens the lab; `make test` sets up and runs the whole suite.
.PHONY: setup lab test lint bench assets conformance clean

setup:
	./scripts/setup.sh

lab: setup
	.venv/bin/wasmlab samples --quiet
	.venv/bin/wasmlab

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
