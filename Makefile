# Set-up and everyday commands. Everything lives in a local virtual environment (.venv),
# so nothing is installed system-wide.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= demo_data

.PHONY: install run pipeline test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned (a looser spec pulls the newest CUDA build). From PyPI on Linux
	# x86_64 this is the CUDA build (uses an NVIDIA GPU); TORCH_INDEX=https://download.pytorch.org/whl/cpu
	# gives the much smaller CPU-only build.
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: open the window on the built-in demo dataset (made on first use in the user's data folder).
## First the X11 libraries Qt's xcb plugin needs: installed with apt-get when run as root,
## otherwise the one command that installs them is printed.
run: $(STAMP)
	$(BIN)/python -m picker_gui.gui.qt_deps --install
	$(BIN)/picker-gui gui --demo

## pipeline: the headless pipeline on a demo dataset in $(DEMO)/: preprocess, convert,
## train on its sparse labels, pick, evaluate against the truth
pipeline: $(STAMP)
	@test -f $(DEMO)/dataset.json || $(BIN)/picker-gui demo $(DEMO) --n-micrographs 8
	$(BIN)/picker-gui preprocess $(DEMO)/micrographs --out $(DEMO)/preprocessed --diameter-a 150
	$(BIN)/picker-gui convert $(DEMO)/particles.star $(DEMO)/export/relion --to relion
	$(BIN)/picker-gui convert $(DEMO)/particles.star $(DEMO)/export/box --to box --box-size 96
	$(BIN)/picker-gui convert $(DEMO)/particles.star $(DEMO)/export/particles_topaz.txt --scale 0.25
	$(BIN)/picker-gui train $(DEMO)/micrographs --labels $(DEMO)/labels.star --diameter-a 150 \
		--expected-per-micrograph 180 --out $(DEMO)/model.pt
	$(BIN)/picker-gui pick $(DEMO)/model.pt $(DEMO)/micrographs --out $(DEMO)/picks.star
	$(BIN)/picker-gui evaluate $(DEMO)/picks.star $(DEMO)/particles.star --radius-px 37
	@echo "Demo pipeline done: see $(DEMO)/"

## test: the whole test suite, headless (no display, no GPU needed)
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/preprocess_speed.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
