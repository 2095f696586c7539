# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, pretrains SimCLR on Fashion-MNIST, prints probe accuracies
#   make test   installs everything and runs the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench install data clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data:
	@bash tools/ensure_fashion_mnist.sh

demo: install data
	$(VENV)/bin/ssl-emp demo

# tests run in parallel processes (pytest-xdist; one torch thread each, see tests/conftest.py),
# work-stealing because a few end-to-end tests take a minute or more
test: install data
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist worksteal

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy ssl_emp/

bench: install data
	$(PY) tools/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
