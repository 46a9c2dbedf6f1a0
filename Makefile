# Two commands on a fresh machine:  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
# The torch build to install; override e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124"
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test setup bench clean package package-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python main.py

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n 2 --dist worksteal

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build dist *.egg-info

# A one-folder desktop build in dist/hspace-studio, then its smoke test.
package: $(STAMP)
	$(BIN)/python -m pip install -q "pyinstaller>=6.10"
	$(BIN)/python packaging/make_icon.py
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller packaging/hspace-studio.spec
	$(MAKE) package-smoke

package-smoke:
	QT_QPA_PLATFORM=offscreen bash packaging/smoke_test.sh dist/hspace-studio/hspace-studio
