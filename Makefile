# Quick start: `make demo` and `make test`. Both create .venv and install ventralkit into it
# (editable, so source edits need no reinstall); the install is redone only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast stress bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster,timm]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ventralkit demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not stress"

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not stress"

# `corrupt -j 2` over every corruption, 50 fresh processes: no hang, the same bytes (~4 min on 2 cores)
stress: $(STAMP)
	$(PY) -m pytest -q -m stress tests/test_corrupt_stress.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# On a CUDA machine: the CUDA tests, then train/feature/data-pipeline ratios appended to benchmarks/RESULTS.md
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_suite.py --device cuda

# The Brain-Score adapter against brainscore-vision itself, in its own environment: brainscore-vision pins
# numpy<2 and scikit-learn<1.6, so it never goes into .venv (where tests/test_brainscore.py skips the
# construction test). Run by hand before a release and after changing integrations/brainscore.py; CI does
# not run it (its first install puts ~7 GB in .venv-brainscore: torch with its CUDA libraries, jupyter).
BS_VENV  := .venv-brainscore
BS_PY    := $(BS_VENV)/bin/python
BS_STAMP := $(BS_VENV)/.installed

$(BS_STAMP): pyproject.toml
	test -x $(BS_PY) || $(PYTHON) -m venv $(BS_VENV)
	$(BS_PY) -m pip install --quiet --upgrade pip
	$(BS_PY) -m pip install --quiet -e '.[test]' 'brainscore-vision==2.4.2'
	touch $(BS_STAMP)

.PHONY: test-brainscore
test-brainscore: $(BS_STAMP)
	VENTRALKIT_REQUIRE_BRAINSCORE=1 $(BS_PY) -m pytest -q -p no:cacheprovider tests/test_brainscore.py

# rsatoolbox 0.3.2 for tests/test_rsa_agreement.py, in its own folder (never a dependency, never in .venv): it
# runs in a subprocess with PYTHONPATH=.peers/rsatoolbox. .venv already has its numpy/scipy/scikit-learn/
# scikit-image/matplotlib/h5py/tqdm/joblib/networkx; only pandas is added beside it. ~15 s from the registry.
PEER_RSA := .peers/rsatoolbox

.PHONY: peer-rsatoolbox peers
$(PEER_RSA)/.installed: $(STAMP)
	$(PY) -m pip install --quiet --target $(PEER_RSA) --no-deps 'rsatoolbox==0.3.2' 'pandas==3.1.1'
	touch $@

peer-rsatoolbox: $(PEER_RSA)/.installed

peers: peer-rsatoolbox

# brainscore-vision 2.4.2's behavioural metric code (metrics/i1i2, metrics/error_consistency) for
# tests/test_behaviour_brainscore.py, never a dependency (it pins numpy<2): the two packages without their
# dependencies in .peers/brainscore, and what the two metric modules import (numpy 1.26, xarray<2022.6, pandas,
# scipy, scikit-learn<1.6, netCDF4, boto3, Pillow) in .peers/brainscore-deps. The reference script runs them with
# `python -S` and only these two folders on PYTHONPATH. ~30 s from the registry, ~660 MB.
PEER_BS := .peers/brainscore
PEER_BS_DEPS := .peers/brainscore-deps

.PHONY: peer-brainscore
$(PEER_BS)/.installed: $(STAMP)
	$(PY) -m pip install --quiet --target $(PEER_BS) --no-deps 'brainscore-vision==2.4.2' 'brainscore-core==2.5.0'
	$(PY) -m pip install --quiet --target $(PEER_BS_DEPS) 'numpy==1.26.4' 'pandas==2.3.3' 'xarray==2022.3.0' \
		'scikit-learn==1.5.2' 'scipy==1.17.1' netCDF4 tqdm boto3 requests 'PyYAML>=6.0.3,<7' Pillow
	touch $@

peer-brainscore: $(PEER_BS)/.installed

peers: peer-brainscore

clean:
	rm -rf $(VENV) $(BS_VENV) demo_runs .pytest_cache
