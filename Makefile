# One-command entry points for a fresh machine (see README.md).
#   make book   set up .venv, execute every notebook and build the HTML book
#   make test   set up .venv, run unit tests + docstring examples + every notebook under nbmake
# Everything runs offline on what the repository ships.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.course-installed
EXTRAS ?= baselines,book,dev
PYTEST_ARGS ?=

.PHONY: setup test unit doctest notebooks browser-test book bench clean lint strip help

help:
	@echo "make book   - set up and build the book (HTML in _build/html)"
	@echo "make test   - set up and run all tests (unit + notebooks + browser)"
	@echo "make unit | doctest | notebooks | browser-test | bench | lint | strip | clean"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: this picks the CPU wheel and avoids GBs of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# All tests in one pytest run (one summary line): unit tests + the docstring examples of every
# module of course_helpers (--doctest-modules) + every book notebook.
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests course_helpers book --doctest-modules --nbmake --nbmake-timeout=600 -p no:cacheprovider $(PYTEST_ARGS)

unit: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests course_helpers --doctest-modules $(PYTEST_ARGS)

doctest: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest course_helpers --doctest-modules $(PYTEST_ARGS)

notebooks: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest book --nbmake --nbmake-timeout=600 $(PYTEST_ARGS)

browser-test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m browser $(PYTEST_ARGS)

book: setup
	HF_HUB_OFFLINE=1 $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book built: open _build/html/index.html"

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m bench -s $(PYTEST_ARGS)
	for f in benchmarks/bench_*.py; do echo "== $$f"; HF_HUB_OFFLINE=1 $(BIN)/python $$f || exit 1; done

lint: setup
	$(BIN)/ruff check course_helpers tests data_scripts benchmarks

strip: setup
	$(BIN)/nbstripout book/*.ipynb

clean:
	rm -rf _build .pytest_cache
