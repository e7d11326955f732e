# Two entry points for a fresh machine: `make app` and `make test`. Both install what they need.
# `make app` installs only what the app runs on; `make test` adds the test tools. PORT=8599 make app (or
# `make app PORT=8599`) serves elsewhere.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
# PyTorch's CPU-only wheels (a few hundred MB) where their index can be reached; PyPI's wheel (CUDA libraries
# included, several GB) where it cannot. The line after the install says which one came.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PORT ?= 8501

.PHONY: install install-app app test lint bench browser

install-app: $(VENV)/.installed-app
install: $(VENV)/.installed

$(VENV)/.installed-app: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --index-url $(TORCH_INDEX) --timeout 20 --retries 1 $(TORCH) \
		|| $(PY) -m pip install -q $(TORCH)
	@$(PY) -c "import torch; c = torch.version.cuda; print('PyTorch', torch.__version__, '(the CPU-only wheel)' \
		if c is None else '(PyPI wheel with the CUDA ' + c + ' libraries: no CPU-only wheel was reachable)')"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-app
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian's Chromium drives the end-to-end browser test (Playwright's own browser download cannot run offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

app: install-app
	$(VENV)/bin/streamlit run app/streamlit_app.py --server.headless true --server.port $(PORT) \
		--browser.gatherUsageStats false

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install-app
	$(PY) bench/bench.py
