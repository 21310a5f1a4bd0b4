# convscope developer commands. `make demo` and `make test` each build their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convscope-installed
# the tests that run once per Keras backend (torch, tensorflow, jax)
KERAS_TESTS := tests/adapters/keras tests/parity

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch first, so nothing pulls a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test,keras-tf,keras-jax]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/convscope demo

test: $(STAMP)
	bash scripts/ensure-browser.sh
	bash scripts/ensure-poppler.sh
	$(VENV)/bin/ruff check src tests benchmarks scripts examples
	# type check src/convscope (settings: [tool.mypy] in pyproject.toml; the package ships py.typed)
	$(VENV)/bin/mypy --config-file pyproject.toml
	KERAS_BACKEND=torch $(PY) -m pytest -q -n 2 --dist loadfile
	# the Keras suites again on Keras's other backends (TensorFlow is Keras's default)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -n 2 --dist loadfile $(KERAS_TESTS)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(PY) -m pytest -q -n 2 --dist loadfile $(KERAS_TESTS)

bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/cam_bench.py --memory3d
	$(PY) benchmarks/export_cost.py --sizes 224,448,896 --ways bare,cli --repeats 9

clean:
	rm -rf $(VENV) convscope-demo test-artifacts benchmarks/out
