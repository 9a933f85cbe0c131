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

# The peer libraries (rsatoolbox, brainscore-vision's metrics, thingsvision; ~75 s and ~1.8 GB the first time) are
# installed beside .venv so the agreement tests run; if the registry cannot be reached they are left out and those
# tests skip with the reason (`make peers` installs them later).
test: $(STAMP) peers-if-possible
	$(PY) -m pytest -q -m "not stress"

.PHONY: peers-if-possible
peers-if-possible: $(STAMP)
	@$(MAKE) --no-print-directory peers || echo "peer libraries not installed (registry unreachable?): the agreement tests will skip"

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
	rm -rf $(PEER_RSA)
	$(PY) -m pip install --quiet --target $(PEER_RSA) --no-deps 'rsatoolbox==0.3.2' 'pandas==3.1.1' \
		|| { rm -rf $(PEER_RSA); exit 1; }
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
	rm -rf $(PEER_BS) $(PEER_BS_DEPS)
	{ $(PY) -m pip install --quiet --target $(PEER_BS) --no-deps 'brainscore-vision==2.4.2' 'brainscore-core==2.5.0' \
	  && $(PY) -m pip install --quiet --target $(PEER_BS_DEPS) 'numpy==1.26.4' 'pandas==2.3.3' 'xarray==2022.3.0' \
		'scikit-learn==1.5.2' 'scipy==1.17.1' netCDF4 tqdm boto3 requests 'PyYAML>=6.0.3,<7' Pillow; } \
		|| { rm -rf $(PEER_BS) $(PEER_BS_DEPS); exit 1; }
	touch $@

peer-brainscore: $(PEER_BS)/.installed

peers: peer-brainscore

# thingsvision 2.7.3 for tests/test_thingsvision_agreement.py, never a dependency: `import thingsvision` imports
# tensorflow (and keras) eagerly, whatever the model, so its torchvision extractor needs them. Everything goes into
# .peers/thingsvision without dependencies (no second torch/torchvision: .venv's are used): thingsvision, the CPU
# build of tensorflow 2.15 (its last version thingsvision accepts) with what its import needs, numpy 1.26
# (tensorflow 2.15 is built against numpy 1; it shadows .venv's numpy only in the subprocess that runs
# thingsvision), torchtyping/typeguard and requests (imported by thingsvision's extractor). ~30 s, ~1.1 GB.
PEER_TV := .peers/thingsvision

.PHONY: peer-thingsvision
$(PEER_TV)/.installed: $(STAMP)
	rm -rf $(PEER_TV)
	$(PY) -m pip install --quiet --target $(PEER_TV) --no-deps 'thingsvision==2.7.3' 'tensorflow-cpu==2.15.1' \
		'numpy==1.26.4' 'keras==2.15.0' 'tensorflow-estimator==2.15.0' 'tensorboard==2.15.2' \
		'tensorboard-data-server==0.7.2' 'tensorflow-io-gcs-filesystem==0.37.1' 'ml-dtypes==0.3.2' \
		'protobuf==4.25.9' 'wrapt==1.14.2' absl-py flatbuffers gast google-pasta opt_einsum termcolor astunparse \
		six markdown werkzeug 'torchtyping==0.1.5' 'typeguard==2.13.3' requests urllib3 charset-normalizer certifi \
		|| { rm -rf $(PEER_TV); exit 1; }
	touch $@

peer-thingsvision: $(PEER_TV)/.installed

peers: peer-thingsvision

clean:
	rm -rf $(VENV) $(BS_VENV) demo_runs .pytest_cache
