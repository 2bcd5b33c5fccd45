# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv from requirements.lock when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV := $(PYTHON) -m uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONWARNINGS ?= ignore::FutureWarning,ignore::DeprecationWarning

.PHONY: venv demo test test-fast check format bench base-models lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(PY) || $(UV) venv --python $(PYTHON) $(VENV)
	$(UV) pip install --python $(PY) --no-deps -r requirements.lock
	$(UV) pip install --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ctdenoise demo

# Two pytest-xdist workers, one per core: most tests wait on one Python process at a time. The 25
# slowest tests are listed at the end, where a suite that grows slower shows first.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --no-loadscope-reorder --durations=25 tests

# The tests not marked slow (no end-to-end runs): a few minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" --durations=10 tests

# Lint, format and types: ruff and mypy, configured in pyproject.toml.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Apply ruff's formatting and its safe fixes.
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark, one after the other (about 21 min on 2 cores), then BENCHMARKS.md and README's figures.
bench: $(STAMP)
	$(PY) -m benchmarks.run_all --out benchmarks/results

# Retrain the shipped base model (docs/design.md, "Base models") on the real patients in ../shared/realct whose
# licences let weights ship; replaces ctdenoise/data/base/red_cnn. Run it from a clean checkout: the commit is recorded.
base-models: $(STAMP)
	$(VENV)/bin/ctdenoise train-base --realct ../shared/realct --model red_cnn --root runs/base/red_cnn
	$(VENV)/bin/ctdenoise train-base --realct ../shared/realct --model cycle_identity --root runs/base/cycle_identity

# Re-resolve the lock (docs/design.md, "Lock recipe"): resolve as for Python 3.10 with the protobuf that 3.11
# needs (requirements.overrides), install with --no-deps on 3.11. uv keeps the lock's versions where it can.
lock:
	$(UV) pip compile requirements.in --python-version 3.10 --python-platform x86_64-manylinux_2_36 \
		--override requirements.overrides -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
