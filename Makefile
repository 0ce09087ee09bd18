# The two commands README shows for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDEVMODE := 1

.PHONY: demo test test-sqlite test-postgres test-lowest test-newest fuzz scale lint services browser docs check

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
	$(VENV)/bin/mypy
	$(PY) manage.py makemigrations --check --dry-run

test-sqlite: $(STAMP) browser
	$(VENV)/bin/pytest

# The quickstart test builds its own SQLite project in a fresh venv: test-sqlite runs it once.
test-postgres: $(STAMP) services
	CHATKIT_TEST_DB=postgres $(VENV)/bin/pytest -m "not browser and not quickstart"

test: lint test-sqlite test-postgres

# The suite (SQLite, without the browser tests) in a fresh venv holding the LOWEST versions
# pyproject.toml allows of every direct dependency, runtime, extras and test group alike
# (uv's lowest-direct resolution; pip has none). Transitive dependencies resolve to their
# newest compatible releases, except the few pinned in .ci/lowest-constraints.txt.
# `make test` is the newest run: its venv is resolved fresh by pip in CI; `make test-newest`
# re-resolves one for a developer whose .venv has aged.
LOWEST := .venv-lowest
NEWEST := .venv-newest
UV := UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv
DIRECT := openai-chatkit|openai-agents|openai|django|djangorestframework|django-storages|channels|daphne|markdown|nh3|typing-extensions|psycopg|boto3|channels-redis

test-lowest: $(STAMP)
	rm -rf $(LOWEST)
	$(UV) venv -q --python $(PYTHON) $(LOWEST)
	$(UV) pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct \
		-c .ci/lowest-constraints.txt -e ".[postgres,s3,redis]" --group test
	@$(UV) pip freeze -q --python $(LOWEST)/bin/python | grep -iE '^($(DIRECT))==' | tr '\n' ' '; echo
	CHATKIT_FUZZ_EXAMPLES=25 $(LOWEST)/bin/pytest -m "not browser and not quickstart" -p no:cacheprovider

test-newest: $(STAMP)
	rm -rf $(NEWEST)
	$(UV) venv -q --python $(PYTHON) $(NEWEST)
	$(UV) pip install -q --python $(NEWEST)/bin/python --upgrade -e ".[postgres,s3,redis]" --group test
	@$(UV) pip freeze -q --python $(NEWEST)/bin/python | grep -iE '^($(DIRECT))==' | tr '\n' ' '; echo
	$(NEWEST)/bin/pytest -m "not browser and not quickstart" -p no:cacheprovider

# A long fuzzing run of the endpoint and the upload views (tests/endpoint/test_fuzz.py), a new seed
# each time, on SQLite; prints the requests tried and the 5xx found. FUZZ_EXAMPLES=n per view.
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	CHATKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CHATKIT_FUZZ_RANDOM=1 \
		$(VENV)/bin/pytest tests/endpoint/test_fuzz.py -p no:cacheprovider -q -s

# The scale harness (benchmarks/scale.py): uvicorn workers on PostgreSQL, S3 (a moto server)
# and Redis under a mixed load of every request type with hang-ups; prints one table. Not
# part of `make test` (its short form is tests/live/test_scale_harness.py). Override SCALE_ARGS,
# e.g. SCALE_ARGS="--workers 2 --users 30 --duration 60 --restart-db".
SCALE_ARGS ?= --workers 2 --users 30 --duration 60 --private-db
scale: $(STAMP) services
	PYTHONDEVMODE=0 $(PY) benchmarks/scale.py $(SCALE_ARGS)

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

check: test
