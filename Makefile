# SAFEGEN: two commands do everything on a fresh Debian machine with Python 3.11.
#   make run    set up, then start the dashboard on the embedded demo
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | sha1sum | cut -c1-12)
PORT ?= 8501

.PHONY: setup system-deps run test reference benchmark models head ablations loko realistic-benchmark evaluate bench clean reference-ct benchmark-ct models-ct generated-set

setup: $(STAMP) system-deps

# torch first, from the CPU wheel pinned in requirements.txt, so nothing pulls a CUDA build.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# Debian packages: real reference/demo scans (mricron-data, insighttoolkit5-examples) and
# Chromium for the browser tests. Prints what it could not install; the tests that need a
# missing piece are skipped with that reason.
system-deps:
	@bash scripts/install_system_deps.sh

run: setup
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: setup
	@bash scripts/run_tests.sh $(BIN)/python

reference: setup
	$(BIN)/python -m workflows.cli build-reference --out data/reference --seed 0

# Two simulated-artifact sets with seeds used nowhere else: "val" picks alpha, "test" is reported.
benchmark: reference
	$(BIN)/python -m workflows.cli make-benchmark --reference data/reference --split val --out data/benchmark_val --seed 101 --n-per 2
	$(BIN)/python -m workflows.cli make-benchmark --reference data/reference --split test --out data/benchmark --seed 202 --n-per 4
	$(BIN)/python -m workflows.cli make-turing-set --reference data/reference --split test --out data/turing --seed 303 --n 8

# Retrain both committed models and latent_ig's small VAE, and refit the calibrations
# (CPU, seeded; about 40 min on 2 cores).
models: benchmark
	$(BIN)/python -m workflows.cli train autoencoder
	$(BIN)/python -m workflows.cli train diffusion
	$(BIN)/python -m workflows.cli train vae
	$(BIN)/python -m workflows.cli calibrate
	$(BIN)/python -m workflows.cli calibrate-explainers

# The segmentation head (core/detectors/head.py), the detector: chosen on the realistic validation sets
# among the heads below, it sees the image alone and trains with hard-negative mining, elastic variation,
# a crop-level loss on its slice score and a tenth of its slices at coarse (1.2-2.2 mm) pixels, for 28 000
# steps (seeded, CPU, resumable with `train-head --resume`; about 47 min on 2 idle cores), then its slice /
# volume thresholds and its explainers' scale (about 10 min) and the appearance check (about 2 min).
head: setup
	$(BIN)/python -m workflows.cli train-head --inputs image --hard-negative-probability 0.5 --elastic-px 8 \
		--refresh-every 250 --image-loss-weight 1 --steps 28000 --coarse-probability 0.1
	$(BIN)/python -m workflows.cli calibrate-head
	$(BIN)/python -m workflows.cli calibrate-domain

# The ablation heads of the evaluation (committed in models/ablation): the image with E_AE's and
# S_diffusion's reconstructions (the detector before issue 21 part 4), the image alone on that recipe,
# the image alone with hard-negative mining and elastic variation (4 px), and that recipe with the
# crop-level loss on the slice score (part 4's detector), and that recipe with elastic 8 px on 14 000 steps
# (part 5's detector; about 50, 35, 30, 70 and 70 min on 2 cores; calibration 5-25 min each).
ABLATION_HEADS := models/ablation/head_mri_t1_3inputs.pt,models/ablation/head_mri_t1_image.pt,models/ablation/head_mri_t1_image_hn.pt,models/ablation/head_mri_t1_image_hn_il.pt,models/ablation/head_mri_t1_image_hn_il_e8.pt
ablations: setup
	$(BIN)/python -m workflows.cli train-head --out models/ablation/head_mri_t1_3inputs.pt
	$(BIN)/python -m workflows.cli calibrate-head --head models/ablation/head_mri_t1_3inputs.pt
	$(BIN)/python -m workflows.cli train-head --inputs image --out models/ablation/head_mri_t1_image.pt
	$(BIN)/python -m workflows.cli calibrate-head --head models/ablation/head_mri_t1_image.pt
	$(BIN)/python -m workflows.cli train-head --inputs image --hard-negative-probability 0.5 --elastic-px 4 \
		--refresh-every 250 --out models/ablation/head_mri_t1_image_hn.pt
	$(BIN)/python -m workflows.cli calibrate-head --head models/ablation/head_mri_t1_image_hn.pt
	$(BIN)/python -m workflows.cli train-head --inputs image --hard-negative-probability 0.5 --elastic-px 4 \
		--refresh-every 250 --image-loss-weight 1 --out models/ablation/head_mri_t1_image_hn_il.pt
	$(BIN)/python -m workflows.cli calibrate-head --head models/ablation/head_mri_t1_image_hn_il.pt
	$(BIN)/python -m workflows.cli train-head --inputs image --hard-negative-probability 0.5 --elastic-px 8 \
		--refresh-every 250 --image-loss-weight 1 --out models/ablation/head_mri_t1_image_hn_il_e8.pt
	$(BIN)/python -m workflows.cli calibrate-head --head models/ablation/head_mri_t1_image_hn_il_e8.pt

# The leave-one-kind-out table: heads with the image input and the hard-negative recipe on a short
# schedule (3000 steps), one without the training corruptions closest to each artifact kind and one
# with all of them (models/loko, committed; about 60 min on 2 cores), then each kind's AUROC for the
# head that never saw it (evaluate-loko, also part of `make evaluate`).
loko: realistic-benchmark
	$(BIN)/python -m workflows.cli train-loko --hard-negative-probability 0.5 --elastic-px 4 --refresh-every 250
	$(BIN)/python -m workflows.cli evaluate-loko

# Real slices under normal variation, half with one artifact, from the training subjects' test split
# and from the held-out subject (core/benchmark/realistic.py); plus 12 clean varied held-out volumes; and
# the same kind of set stored at pixel sizes of 1-2 mm (PNGs do not state theirs; NIfTIs do).
realistic-benchmark: setup
	$(BIN)/python -m workflows.cli make-realistic-benchmark --out data/realistic_benchmark --seed 505
	$(BIN)/python -m workflows.cli make-realistic-benchmark --out data/realistic_benchmark_px --seed 515 --pixel-mm 1,2 \
		--n-volumes 0

evaluate: benchmark benchmark-ct realistic-benchmark
	$(BIN)/python -m workflows.cli evaluate-realistic --baselines spectral_local,padim --heads $(ABLATION_HEADS)
	$(BIN)/python -m workflows.cli evaluate-realistic --benchmark data/realistic_benchmark_px --out out/evaluation_realistic_px \
		--no-seed-row --heads $(ABLATION_HEADS)
	$(BIN)/python -m workflows.cli evaluate-loko
	$(BIN)/python -m workflows.cli evaluate --out out/evaluation
	$(BIN)/python -m workflows.cli evaluate --methods all --out out/evaluation
	$(BIN)/python -m workflows.cli evaluate --profile ct_head

# The head-CT profile (core/profiles.py): one real head CT from Debian invesalius-examples, the
# same recipe, seeds and benchmark seeds as brain MRI; its files end in _ct_head.
reference-ct: setup
	$(BIN)/python -m workflows.cli build-reference --profile ct_head --seed 0

benchmark-ct: reference-ct
	$(BIN)/python -m workflows.cli make-benchmark --reference data/reference_ct_head --split val --out data/benchmark_val_ct_head --seed 101 --n-per 2
	$(BIN)/python -m workflows.cli make-benchmark --reference data/reference_ct_head --split test --out data/benchmark_ct_head --seed 202 --n-per 4

# Retrain the head-CT profile's models and calibrations (CPU, seeded; about 25 min on 2 cores).
models-ct: benchmark-ct
	$(BIN)/python -m workflows.cli train autoencoder --profile ct_head
	$(BIN)/python -m workflows.cli train diffusion --profile ct_head
	$(BIN)/python -m workflows.cli train vae --profile ct_head
	$(BIN)/python -m workflows.cli calibrate --profile ct_head
	$(BIN)/python -m workflows.cli calibrate-explainers --profile ct_head

# The demo's generated set (core/benchmark/generated_set.py): train the DDPM generator (seed 1, CPU, about
# 21 min), then sample demo/generated_mri_t1 (about 4 min) and score it (groups.csv per generator).
generated-set: reference
	$(BIN)/python -m workflows.cli train generator
	$(BIN)/python -m workflows.cli make-generated-set
	$(BIN)/python -m workflows.cli score demo/generated_mri_t1 --out out/generated --profile mri_t1

bench: benchmark
	$(BIN)/python -m workflows.cli bench
	$(BIN)/python scripts/bench_dashboard.py
	$(BIN)/python scripts/bench_reader_study.py

clean:
	rm -rf $(VENV) data/reference data/benchmark data/benchmark_val data/turing data/realistic_benchmark out .pytest_cache \
		data/reference_ct_head data/benchmark_ct_head data/benchmark_val_ct_head
