# The two commands README shows for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDEVMODE := 1

.PHONY: demo test test-sqlite test-postgres lint services browser docs check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e ".[postgres,s3,redis]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	$(PY) manage.py runserver 127.0.0.1:8000

services:
	scripts/services.sh

browser:
	scripts/browser.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check chatkit_django tests
	$(PY) manage.py makemigrations --check --dry-run

test-sqlite: $(STAMP) browser
	$(VENV)/bin/pytest

# The quickstart test builds its own SQLite project in a fresh venv: test-sqlite runs it once.
test-postgres: $(STAMP) services
	CHATKIT_TEST_DB=postgres $(VENV)/bin/pytest -m "not browser and not quickstart"

test: lint test-sqlite test-postgres

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

check: test
