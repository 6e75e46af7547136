# Quick start:  make demo      (runs the node on its built-in scene and writes the result)
#               make test      (runs the test suite)
# Both create .venv with the locked requirements (requirements.lock) when it is missing.
# CI also runs:  make test-ros  (the ROS 2 launch stack from $(ROS_WHEELS): colcon build, ros2 launch, launch tests)
# Refresh the lock: make lock  (resolves requirements.txt, colcon and the launch stack in a fresh venv)

PYTHON ?= python3
SHARED ?= ../shared
T      := $(SHARED)/data/teachers
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed
# The ROS 2 Jazzy launch stack as wheels (launch, launch_ros, launch_pytest, ros2 launch; see its README), installed
# from that folder only, and the colcon build tools from PyPI.
ROS_WHEELS    ?= $(SHARED)/wheels/ros-jazzy-launch
ROS_LAUNCH    := launch launch_xml launch_yaml launch_testing launch_pytest launch_ros launch_testing_ros \
                 ros2cli ros2pkg ros2launch ros-jazzy-composition-interfaces
ROS_BUILD     := colcon-common-extensions ros-jazzy-ament-package
ROS_STAMP     := $(VENV)/.installed-ros
STOP_REPEATS  ?= 20

.PHONY: venv venv-ros test test-ros test-fast demo bench eval lock clean

venv: $(STAMP)

$(STAMP): requirements.txt $(LOCK) setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) pip setuptools
	$(PIP) install -q -r requirements.txt -c $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# PYTEST_ARGS: extra pytest options (CI: -rA, a line for every test in the summary).
test: $(STAMP)
	$(PY) -m pytest -q test $(PYTEST_ARGS)

# The launch tests for real, none skipped: colcon build into a temporary workspace, the install tree,
# ros2 launch (namespace, params file, remaps, $(STOP_REPEATS) Ctrl-C and SIGTERM stops), launch_pytest, colcon test.
test-ros: $(ROS_STAMP)
	FUSION_ROS_REQUIRE_LAUNCH=1 FUSION_ROS_STOP_REPEATS=$(STOP_REPEATS) $(PY) -m pytest -v test/launch

venv-ros: $(ROS_STAMP)

$(ROS_STAMP): $(STAMP)
	@test -d $(ROS_WHEELS) || { echo "test-ros: $(ROS_WHEELS) not found (the ROS 2 Jazzy launch wheels); set ROS_WHEELS=DIR" >&2; exit 2; }
	$(PIP) install -q -c $(LOCK) $(ROS_BUILD)
	$(PIP) install -q -c $(LOCK) --no-index --find-links $(ROS_WHEELS) $(ROS_LAUNCH)
	$(PIP) check
	touch $(ROS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/fusion-ros demo --out demo_out

bench: $(STAMP)
	$(VENV)/bin/fusion-ros bench --json

# The README's quality tables: teachers, their means, the copies and the shipped student on pairs/dev,
# then flicker on video/dev and detector mAP on pairs/dev/msrs, then the 4 px and 12 px thermal-misalignment runs
# (the student and a 50/50 blend shifted, also scored aligned: misalign_drop), then the network alone (no automatic
# thermal shift) aligned and shifted.
eval: $(STAMP)
	mkdir -p eval_out
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev \
	  --methods SeAFusion=$(T)/SeAFusion/dev TarDAL=$(T)/TarDAL/dev IFCNN=$(T)/IFCNN/dev AUIF=$(T)/AUIF/dev \
	            teacher-mean mean-SeA-IFCNN=teacher-mean:SeAFusion,IFCNN \
	            lite=models/fusion_lite.onnx \
	  --report eval_out/pairs --json > eval_out/pairs.json
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev/msrs --video $(SHARED)/data/video/dev \
	  --methods lite=models/fusion_lite.onnx --detect --no-metrics \
	  --report eval_out/video --json > eval_out/video.json
	for px in 4 12; do $(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev --misalign $$px --metrics Qabf SSIM VIF \
	  --no-speed --methods lite=models/fusion_lite.onnx --json > eval_out/misalign$$px.json; done
	$(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev --no-auto-align --no-speed \
	  --methods SeAFusion=$(T)/SeAFusion/dev TarDAL=$(T)/TarDAL/dev IFCNN=$(T)/IFCNN/dev AUIF=$(T)/AUIF/dev \
	            lite=models/fusion_lite.onnx --json > eval_out/pairs_network_alone.json
	for px in 4 12; do $(VENV)/bin/fusion-ros eval --pairs $(SHARED)/data/pairs/dev --misalign $$px --metrics Qabf SSIM VIF \
	  --no-speed --no-auto-align --methods lite=models/fusion_lite.onnx --json > eval_out/misalign$${px}_network_alone.json; done

# Every package of a CI venv at its exact version: requirements.txt, colcon and the launch stack, resolved in a fresh
# venv (local version labels such as +cpu dropped, so the pins also resolve on PyPI). Written whole or not at all.
lock:
	@test -d $(ROS_WHEELS) || { echo "lock: $(ROS_WHEELS) not found (the ROS 2 Jazzy launch wheels); set ROS_WHEELS=DIR" >&2; exit 2; }
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip setuptools && \
	"$$tmp/venv/bin/python" -m pip install -q -r requirements.txt $(ROS_BUILD) && \
	"$$tmp/venv/bin/python" -m pip install -q --no-index --find-links $(ROS_WHEELS) $(ROS_LAUNCH) && \
	"$$tmp/venv/bin/python" -m pip check && \
	{ echo "# Exact versions of every package of the CI venv: requirements.txt, $(ROS_BUILD)"; \
	  echo "# and the launch stack of $(ROS_WHEELS). Used as pip constraints by make venv / test-ros."; \
	  echo "# Regenerate with: make lock   (resolved with $$("$$tmp/venv/bin/python" --version))"; \
	  "$$tmp/venv/bin/python" -m pip freeze --all | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > "$$tmp/lock" && \
	mv "$$tmp/lock" $(LOCK) && echo "wrote $(LOCK) ($$(grep -c '==' $(LOCK)) pins)"

clean:
	rm -rf $(VENV) demo_out .pytest_cache
