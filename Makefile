# The README's commands. `make demo` and `make test` each create .venv and install on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo demo-object test bench clean protos

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Generate a synthetic dataset (once), train on it, evaluate, run inference and export an ONNX
# (configs/demo.py holds every path, under results/demo/).
demo: venv
	$(PY) tools/make_synthetic_dataset.py --out results/demo/data --category camera --num-train 800 \
	    --num-val 100 --width 256 --height 256 --max-objects 1 --seed 0 --skip-existing
	$(PY) train.py --config=configs/demo.py
	$(PY) evaluate.py --config=configs/demo.py
	$(PY) infer.py --config=configs/demo.py
	$(PY) export.py --config=configs/demo.py

# Your own object: build the project's textured demo mesh, render a labelled dataset of it with Mitsuba 3, train the
# slim demo model on it, evaluate on renders with unseen backgrounds (configs/object_demo.py, results/object_demo/).
demo-object: venv
	$(PY) tools/make_demo_object.py --out results/object_demo/radio.glb
	$(PY) tools/render_object_dataset.py --mesh results/object_demo/radio.glb --out results/object_demo/data \
	    --num-train 800 --num-val 100 --size 128x128 --seed 0 --span 0.5,0.9 --aim 0.2 --elevation 15,60 \
	    --ground-probability 1 --distractors 0,1 --occluder-probability 0.1 --noise 0,0.01 --blur 0,0.6 \
	    --texture-contrast 0.15,0.6
	$(PY) train.py --config=configs/object_demo.py
	$(PY) evaluate.py --config=configs/object_demo.py

# The whole test suite on two worker processes.
test: venv
	$(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

bench: venv
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache

# Regenerate the protobuf classes of centerpose_jax/objectron/proto (checked in; see its __init__.py).
protos: venv
	$(PY) -m grpc_tools.protoc --proto_path=. --python_out=. centerpose_jax/objectron/proto/*.proto
