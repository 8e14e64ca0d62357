# mmspd developer entry points. Each target creates .venv when it is missing
# and installs the pinned stack (requirements/stack.txt) plus mmspd (editable)
# before doing its job; nothing has to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Written last by the install, so an interrupted install is resumed next time.
STAMP := $(VENV)/.mmspd-stack-installed

.PHONY: install test demo benchmark clean

install: $(STAMP)

$(STAMP): requirements/stack.txt setup.py pyproject.toml \
		tools/misc/build_mmcv_wheel.sh mmspd/optim/csrc/adam_spd_cpu.cpp
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $$(grep -E '^(torch|torchvision)==' requirements/stack.txt)
	$(PIP) install --quiet 'setuptools<81' wheel ninja
	wheel=$$(bash tools/misc/build_mmcv_wheel.sh $(PY)) && \
		$(PIP) install --quiet "$$wheel" -r requirements/stack.txt
	$(PIP) install --quiet --no-build-isolation --no-deps -e .
	$(PY) -c "import mmcv.ops, mmseg, mmpretrain, mmdet, mmspd; print('stack OK: mmcv', mmcv.__version__)"
	test "$$MMSPD_WITH_OPS" = 0 || $(PY) -c "import mmspd.optim._adam_spd_cpu; print('mmspd CPU kernel OK')"
	touch $(STAMP)

test: install
	$(PY) -m pytest tests

# Pretrain a small model, fine-tune it with AdamW, L2-SP and AdamSPD, test ID
# and OOD accuracy (offline, CPU, a few minutes; stages cached in
# work_dirs/demo, or $MMSPD_DEMO_DIR).
demo: install
	$(PY) tools/demo.py

benchmark: install
	$(PY) tools/benchmark_optimizer.py

clean:
	rm -rf $(VENV) build *.egg-info
