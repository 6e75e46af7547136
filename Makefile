# Quick start:  make demo   (runs the node on its built-in scene and writes the result)
#               make test   (runs the test suite)
# Both create .venv with the pinned requirements when it is missing.

PYTHON ?= python3
SHARED ?= ../shared
T      := $(SHARED)/data/teachers
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test test-fast demo bench eval clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q test

demo: $(STAMP)
	$(VENV)/bin/fusion-ros demo --out demo_out

bench: $(STAMP)
	$(VENV)/bin/fusion-ros bench --json

# The README's quality tables: teachers, their means, the copies and the shipped students on pairs/dev,
# then flicker on video/dev and detector mAP on pairs/dev/msrs, then the 4 px thermal-misalignment run.
eval: $(STAMP)
	mkdir -p eval_out
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev \
	  --methods SeAFusion=$(T)/SeAFusion/dev TarDAL=$(T)/TarDAL/dev IFCNN=$(T)/IFCNN/dev AUIF=$(T)/AUIF/dev \
	            teacher-mean mean-SeA-IFCNN=teacher-mean:SeAFusion,IFCNN \
	            lite=models/fusion_lite.onnx default=models/fusion_default.onnx \
	  --report eval_out/pairs --json > eval_out/pairs.json
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev/msrs --video $(SHARED)/data/video/dev \
	  --methods lite=models/fusion_lite.onnx default=models/fusion_default.onnx --detect --no-metrics \
	  --report eval_out/video --json > eval_out/video.json
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev --misalign 4 --metrics Qabf SSIM VIF --no-speed \
	  --methods lite=models/fusion_lite.onnx default=models/fusion_default.onnx --json > eval_out/misalign4.json

clean:
	rm -rf $(VENV) demo_out .pytest_cache
