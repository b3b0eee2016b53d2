# Two commands for a new machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
ADBENCH ?= ../shared/data/adbench
DEMO := data/demo/thyroid.csv

.PHONY: run demo-benchmark test test-fast lint soak bench bench-full bench-live bench-overhead bench-scale bench-explain bench-compress bench-images bench-images-quick select-images-quick select-image-transfer select-image-epochs select-image-rearranged select-image-turned select-image-student-map select-image-student-width select-image-standardise bench-images-textures bench-schedule bench-series \
	bench-series-full \
	bench-series-ablation bench-labels bench-labels-quick select-teacher select-label-prior labels-e2e select-alarm-score select-online bench-online-service clean

$(BIN)/anomaly-distill: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The training pipeline on the bundled demo set: embedded Prefect API, MLflow sqlite store in ./mlflow.db.
run: $(BIN)/anomaly-distill
	$(BIN)/anomaly-distill train --data $(DEMO) --label-column label --model-name thyroid-demo

demo-benchmark: $(BIN)/anomaly-distill
	mkdir -p outputs
	$(BIN)/anomaly-distill benchmark $(DEMO) --label-column label --json outputs/demo-benchmark.json

# Style first (ruff lint + format check), then every test; -rs prints why anything was skipped.
# Two pytest processes, one file each at a time (fixtures are per module; the files that use PostgreSQL all on one
# process, see tests/conftest.py), each with one torch/BLAS thread: with torch's default of one thread per core the
# two processes fight over the cores (BENCHMARKS.md "How long make test takes"). --no-loadscope-reorder deals the
# files out in collection order, the long integration files first, not by their number of tests. TEST_WORKERS=0: one
# process.
TEST_WORKERS ?= 2
PARALLEL := $(filter-out 0,$(TEST_WORKERS))
test: $(BIN)/anomaly-distill lint
	$(if $(PARALLEL),OMP_NUM_THREADS=1 MKL_NUM_THREADS=1) $(BIN)/python -m pytest -q -rs --durations=25 \
		$(if $(PARALLEL),-n $(PARALLEL) --dist loadfile --no-loadscope-reorder)

test-fast: $(BIN)/anomaly-distill
	$(BIN)/python -m pytest -q -rs -m "not slow"

lint: $(BIN)/anomaly-distill
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Regenerates the table in BENCHMARKS.md (all six shared ADBench sets).
bench: $(BIN)/anomaly-distill
	mkdir -p benchmarks
	$(BIN)/anomaly-distill benchmark $(ADBENCH)/14_glass.npz $(ADBENCH)/38_thyroid.npz $(ADBENCH)/6_cardio.npz \
		$(ADBENCH)/32_shuttle.npz $(ADBENCH)/34_smtp.npz $(ADBENCH)/11_donors.npz --json benchmarks/adbench.json

# All 30 shared ADBench sets x 3 seeds against six PyOD baselines, two jobs at a time (BENCHMARKS.md "Across 30 sets").
SEEDS ?= 0 1 2
bench-full: $(BIN)/anomaly-distill
	mkdir -p benchmarks
	$(BIN)/anomaly-distill benchmark $(ADBENCH)/*.npz --seeds $(SEEDS) --workers 2 --json benchmarks/adbench_full.json \
		| tee benchmarks/adbench_full.md

# Partial labels (issue 31): ADBench's semi-supervised protocol on all 30 sets x 3 seeds, 1/5/25 % of the training
# anomalies labelled; our student and teacher beside IForest, XGBOD, LightGBM, DevNet, DeepSAD and PReNet; the review
# feedback loop (5 rounds; top, uncertain, random). Resumable: every result is a line in outputs/bench-labels.
# deepod's metadata pins torch<1.13.1 but it runs on torch 2.13, so it is installed without dependencies (numpy,
# scipy, scikit-learn, pandas, tqdm: the project's own; einops comes with the extra).
# LABEL_SETTINGS=benchmarks/labels_settings.json adds students of other teacher.label_prior values and chooses among
# them across sets only (5 folds of 6 sets; the out-of-fold mean is the figure).
LABEL_WORKERS ?= 1
LABEL_SETTINGS ?=
bench-labels: $(BIN)/anomaly-distill
	$(BIN)/python -m pip install --quiet -e '.[labels-bench]'
	$(BIN)/python -m pip install --quiet --no-deps 'deepod==0.4.1'
	mkdir -p benchmarks
	$(BIN)/python benchmarks/labels.py --seeds $(SEEDS) --workers $(LABEL_WORKERS) --feedback \
		$(if $(LABEL_SETTINGS),--settings $(LABEL_SETTINGS)) --json benchmarks/labels.json | tee benchmarks/labels.md

# The short version that fits a session (~1 h on 2 cores): training rows capped at 5,000, our methods, IForest,
# LightGBM (3 seeds), DevNet and DeepSAD (seed 0), and the feedback loop on 8 mid-sized sets (seed 0). No XGBOD or
# PReNet (minutes per split). Its figures are in BENCHMARKS.md ("Learning from the labels people give").
QUICK := --data $(ADBENCH) --max-train-rows 5000 --cache outputs/bench-labels-quick --workers 1
FEEDBACK_SETS := 19_landsat 20_letter 26_optdigits 27_PageBlocks 38_thyroid 40_vowels 44_Wilt 6_cardio
bench-labels-quick: $(BIN)/anomaly-distill
	$(BIN)/python -m pip install --quiet -e '.[labels-bench]'
	$(BIN)/python -m pip install --quiet --no-deps 'deepod==0.4.1'
	$(BIN)/python benchmarks/labels.py $(QUICK) --seeds 0 1 2 --methods ours iforest lightgbm --json /dev/null --plot outputs/bench-labels-quick/unused.png >/dev/null
	$(BIN)/python benchmarks/labels.py $(QUICK) --seeds 0 --methods devnet deepsad --json /dev/null --plot outputs/bench-labels-quick/unused.png >/dev/null
	$(BIN)/python benchmarks/labels.py $(QUICK) --sets $(FEEDBACK_SETS) --seeds 0 --feedback --methods ours iforest \
		--json benchmarks/labels_feedback.json --plot benchmarks/labels_feedback.png | tee benchmarks/labels_feedback.md
	$(BIN)/python benchmarks/labels.py $(QUICK) --seeds 0 1 2 --report-only --methods ours iforest lightgbm devnet deepsad \
		--json benchmarks/labels_quick.json --plot outputs/bench-labels-quick/unused.png | tee benchmarks/labels_quick.md
	$(BIN)/python benchmarks/labels.py $(QUICK) --seeds 0 --report-only --methods ours iforest lightgbm devnet deepsad \
		--json benchmarks/labels_quick_seed0.json --plot outputs/bench-labels-quick/unused.png | tee benchmarks/labels_quick_seed0.md

# How the ensemble teacher's members and rule were chosen: on selection seeds 3 and 4, never reported (BENCHMARKS.md).
SELECTION := outputs/selection
select-teacher: $(BIN)/anomaly-distill
	for seed in 3 4; do $(BIN)/python benchmarks/selection/member_scores.py $(SELECTION)/seed$$seed $$seed $(ADBENCH)/*.npz; done
	$(BIN)/python benchmarks/selection/choose_teacher.py $(SELECTION)/seed3 $(SELECTION)/seed4 \
		--json benchmarks/selection/teacher_choice.json | tee benchmarks/selection/teacher_choice.md

# Issue 31 end to end on ADBench cardio: partly labelled file -> train -> serve-api -> review -> feedback -> nightly
# retrain whose gate rests on the labelled live rows (about 2 min).
labels-e2e: $(BIN)/anomaly-distill
	bash benchmarks/labels_e2e/run.sh 2>&1 | tee benchmarks/labels_e2e/output.txt

# How the teacher's label_prior was chosen: leave-sets-out over the 30 sets x 3 seeds x 1/5/25 % labels (BENCHMARKS.md).
select-label-prior: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/label_prior.py $(ADBENCH)/*.npz --json benchmarks/selection/label_prior.json \
		| tee benchmarks/selection/label_prior.md

# Pyfunc vs raw student throughput, service latency, drift flow time (numbers in BENCHMARKS.md); then serve-api of
# LIVE_BEFORE beside this checkout's, alternating.
LIVE_BEFORE ?= 4064e96
bench-live: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/live_benchmark.py --before $(LIVE_BEFORE)

# Where make run's time goes, phase by phase, beside an earlier commit (BEFORE=<ref>) in the same run.
BEFORE ?= e041f7b
bench-overhead: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/overhead.py --before $(BEFORE) --repeats 4
	$(BIN)/python benchmarks/overhead.py --before $(BEFORE) --repeats 4 --servers

# Rows -> wall time, rows/s and peak RSS for training (100k, 1M, 10M) and batch scoring (1M, 10M, 50M), one process
# and a 2-worker Dask LocalCluster; data jittered from ADBench donors (~6 GB of Parquet in a temporary folder).
bench-scale: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/scale.py --json benchmarks/scale.json | tee benchmarks/scale.md

# Explanations: planted column ranked first? and rows/s with and without explanations (16 ADBench sets, 2 seeds, ~8 min).
bench-explain: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/explain.py --seeds 0 1 --json benchmarks/explain.json | tee benchmarks/explain.md

# Float vs int8 vs pruned students: size, rows/s, AUROC on the 30 ADBench sets, seeds 0 and 1.
bench-compress: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/compression.py --seeds 0 1 --json benchmarks/compression.json | tee benchmarks/compression.md

# Images: digits one-vs-rest (10 classes), the woven and fabric textures with model-free baselines, three teachers
# and their students, and `teacher: auto` judged leave-one-class-out (~2-4 h on 2 cores by machine: a digit run 4-8
# min, a texture run ~20-40 min, two at a time; resumes from its JSON). The default settings: its record before the
# [16, 16] student (2026-12-07), whose [16, 32] students the width screen reuses, is in
# benchmarks/images_before_student_width/.
bench-images: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/images.py --seeds 0 1 2 --jobs 2 --speed \
		--json benchmarks/images.json | tee benchmarks/images.md

# The texture families read at the size they were made (128 px, where 64 px blurs the weave itself away) with each
# image standardised (their lighting and contrast vary), the backbone teacher (`teacher: auto`) and its student,
# beside the model-free baselines at that size (~35-65 min a run on 2 cores, two at a time; resumes from its JSON);
# the [16, 32] student of its record (the default until 2026-12-07; select-image-student-width runs [16, 16]).
bench-images-textures: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/images.py --seeds 0 1 --sets fabric woven --teachers backbone --jobs 2 \
		--settings '{"size": 128, "standardise_images": true, "student_widths": [16, 32]}' \
		--json benchmarks/images_textures128.json \
		| tee benchmarks/images_textures128.md

# A new user's first image model: 10 digit folders (~180 normal + 20 others, 32 px) through the CLI with the
# README's quick settings; wall time and gate verdict each; seed 0, then seeds 1 and 2 (~10 min).
bench-images-quick: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/image_quick.py | tee benchmarks/images_quick/results.md
	for seed in 1 2; do $(BIN)/python benchmarks/image_quick.py --seed $$seed \
		--json benchmarks/images_quick/results_seed$$seed.json | tee benchmarks/images_quick/results_seed$$seed.md; done

# How the quick image settings were chosen, each round leave one class out through the CLI: the hint term (four
# candidates x 10 digits, ~12 min), then the student's epochs (three candidates x 10 digits x seeds 0-2, ~45 min).
select-images-quick: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/images_quick/choose.py --round hint | tee benchmarks/images_quick/choice.md
	$(BIN)/python benchmarks/images_quick/choose.py --round epochs | tee benchmarks/images_quick/choice_epochs.md

# What the image student distils from: four transfer sets x 10 digits x 2 teachers x seeds 0-2, leave one class
# out (~35 min on 2 cores; resumes from its JSON).
select-image-transfer: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_transfer.py --seeds 0 1 2 --teachers backbone autoencoder \
		| tee benchmarks/selection/image_transfer.md

# How long the image student distils: 100 or 200 epochs x 10 digits x the backbone teacher x seeds 0-2, then the
# autoencoder teacher on seed 0 as a check, leave one class out (~25 + ~8 min on 2 cores; resumes from its JSON).
select-image-epochs: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_epochs.py --seeds 0 1 2 --teachers backbone > /dev/null
	$(BIN)/python benchmarks/selection/image_epochs.py --seeds 0 --teachers autoencoder \
		| tee benchmarks/selection/image_epochs.md

# More rearranged copies in the image student's transfer set: 8 against the default 4 (whose students are
# select-image-epochs' 200-epoch ones), 10 digits x the backbone teacher x seeds 0-2, leave one class out (~25 min).
select-image-rearranged: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_rearranged_more.py --seeds 0 1 2 --teachers backbone \
		| tee benchmarks/selection/image_rearranged_more.md

# Turned copies in the image student's transfer set: 0 or 2, 10 digits x the backbone teacher x seeds 0-2, then the
# autoencoder teacher on seed 0 as a check, leave one class out (~45 + ~15 min on 2 cores; resumes from its JSON);
# then 4 against them on the backbone, reusing their students (~25 min).
select-image-turned: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_turned.py --seeds 0 1 2 --teachers backbone > /dev/null
	$(BIN)/python benchmarks/selection/image_turned.py --seeds 0 --teachers autoencoder \
		| tee benchmarks/selection/image_turned.md
	$(BIN)/python benchmarks/selection/image_turned_more.py --seeds 0 1 2 --teachers backbone \
		| tee benchmarks/selection/image_turned_more.md

# The image student's map: distilled, its own features' density, the larger or the mean of both; one student per
# digit serves all four. 10 digits x the backbone teacher x seeds 0-2, then the autoencoder teacher on seed 0, leave one
# class out (~35 + ~10 min on 2 cores, two runs at a time; resumes from its JSON); then its cost in images/s (~3 min).
select-image-student-map: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_student_map.py --seeds 0 1 2 --teachers backbone > /dev/null
	$(BIN)/python benchmarks/selection/image_student_map.py --seeds 0 --teachers autoencoder \
		| tee benchmarks/selection/image_student_map.md
	$(BIN)/python benchmarks/selection/image_student_map_speed.py | tee benchmarks/selection/image_student_map_speed.md

# The image student's width: [16, 32] (the default), [16, 16] or [8, 16], 10 digits x the backbone teacher, seed 0
# (~38 min on 2 cores), then [16, 16] alone on seeds 1 and 2 beside the bench's [16, 32] students (~30 min), and on the
# autoencoder and ensemble teachers, seeds 0-2 (~50 min at one job), leave one class out by a speed rule; both texture
# families at 128 px with [16, 16], seed 0 (~30 min, two at a time), and `fabric` seed 1 (~35-60 min); then their
# images/s beside the teachers (~5 min).
select-image-student-width: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_student_width.py --seeds 0 1 2 --teachers backbone autoencoder ensemble \
		| tee benchmarks/selection/image_student_width.md
	$(BIN)/python benchmarks/images.py --seeds 0 --sets fabric woven --teachers backbone --jobs 2 \
		--settings '{"size": 128, "standardise_images": true, "student_widths": [16, 16]}' \
		--json benchmarks/selection/image_student_width_textures.json > /dev/null
	$(BIN)/python benchmarks/images.py --seeds 1 --sets fabric --teachers backbone --jobs 1 \
		--settings '{"size": 128, "standardise_images": true, "student_widths": [16, 16]}' \
		--json benchmarks/selection/image_student_width_textures.json | tee benchmarks/selection/image_student_width_textures.md
	$(BIN)/python benchmarks/selection/image_student_width.py --speed | tee benchmarks/selection/image_student_width_speed.md

# Each image brought to the normal images' brightness and contrast, or not: 10 digits x 2 teachers x seeds 0 and 1,
# leave one class out (~25 min); then both texture families with it on, seed 0 (~20 min).
select-image-standardise: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/image_standardise.py --seeds 0 1 | tee benchmarks/selection/image_standardise.md
	$(BIN)/python benchmarks/images.py --seeds 0 --sets woven fabric \
		--settings '{"standardise_images": true, "student_widths": [16, 32]}' --json benchmarks/images_standardised.json | tee benchmarks/images_standardised.md

# Distillation schedule and class weight with true labels: student AUROC per variant (30 ADBench sets, seeds 0 and 1).
bench-schedule: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/schedule_ablation.py --json benchmarks/schedule_ablation.json | tee benchmarks/schedule_ablation.md

# Time series: teacher vs student vs IForest vs rolling z-score on the seven NAB realKnownCause series.
NAB ?= ../shared/data/nab
bench-series: $(BIN)/anomaly-distill
	$(BIN)/anomaly-distill benchmark --modality timeseries $(NAB)/realKnownCause/*.csv \
		--labels $(NAB)/labels/combined_windows.json --timestamp-policy file_order --json benchmarks/nab.json

# All 36 shared NAB series x 3 seeds under NAB's rules: the online detector (student, teacher) replays every file
# point by point beside the frozen models of before (fit on the probationary 15 %); streaming peers (river, pysad)
# on the same files; NAB's own scorer (../shared/nab-scorer/score.sh) beside ours. Per-point scores in NAB's results
# layout under outputs/nab-results.
NAB_SCORER ?= ../shared/nab-scorer/score.sh
bench-series-full: $(BIN)/anomaly-distill
	$(BIN)/anomaly-distill benchmark --modality timeseries $(NAB)/*/*.csv --labels $(NAB)/labels/combined_windows.json \
		--timestamp-policy file_order --protocol nab --seeds $(SEEDS) --workers 2 --nab-results outputs/nab-results \
		--nab-scorer $(NAB_SCORER) --json benchmarks/nab_full.json | tee benchmarks/nab_full.md
	$(BIN)/python benchmarks/stream_peers.py --data $(NAB) --out outputs/nab-results --peers hstrank,loda,xstream \
		--score | tee benchmarks/nab_peers.md

# The service with an online series model: one-point requests over HTTP (p50/p99), a SIGKILL halfway, the scores
# after the restart against an uninterrupted replay (BENCHMARKS.md).
bench-online-service: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/online_service.py --points 2000 --json benchmarks/online_service.json

# How the online detector's settings were chosen: leave-one-folder-out over NAB's five folders (BENCHMARKS.md).
select-online: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/choose_online.py --data $(NAB) --workers 2 \
		--json benchmarks/selection/online_choice.json | tee benchmarks/selection/online_choice.md
	$(BIN)/python benchmarks/selection/choose_online.py --data $(NAB) --workers 2 --grid views \
		--json benchmarks/selection/online_views.json | tee benchmarks/selection/online_views.md
	$(BIN)/python benchmarks/selection/choose_online.py --data $(NAB) --workers 2 --grid students \
		--json benchmarks/selection/online_students.json | tee benchmarks/selection/online_students.md
	$(BIN)/python benchmarks/selection/choose_online.py --data $(NAB) --workers 2 --grid residuals \
		--json benchmarks/selection/online_residuals.json | tee benchmarks/selection/online_residuals.md
	$(BIN)/python benchmarks/selection/online_ablation.py --data $(NAB) --workers 2 --seeds 0 1 2 \
		--variants default teacher "one view" "teacher, one view" "mlp student" "mlp student, one view" \
		--json benchmarks/selection/online_students_seeds.json | tee benchmarks/selection/online_students_seeds.md

# How raw series scores become NAB's anomaly_score, chosen leave-one-folder-out on bench-series-full's raw scores.
DETECTORS := $(foreach m,student teacher iforest zscore,$(m) $(m)-seed1 $(m)-seed2)
select-alarm-score: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/selection/choose_alarm_score.py outputs/nab-results $(NAB)/labels/combined_windows.json \
		$(DETECTORS) --json benchmarks/selection/alarm_score_choice.json | tee benchmarks/selection/alarm_score_choice.md

# The whole loop for 30 simulated nights against real servers, with faults; figures in BENCHMARKS.md (Reliability).
soak: $(BIN)/anomaly-distill
	$(BIN)/python benchmarks/soak.py --cycles 30 --json benchmarks/soak.json

clean:
	rm -rf $(VENV) outputs mlruns mlflow.db mlartifacts live-store retraining

# What each part of the series distillation recipe is worth, on the two series where it mattered (BENCHMARKS.md).
ABLATION := benchmarks/series_ablation
bench-series-ablation: $(BIN)/anomaly-distill
	for config in $(ABLATION)/*.yaml; do \
		$(BIN)/anomaly-distill benchmark --modality timeseries $(NAB)/realKnownCause/nyc_taxi.csv \
			$(NAB)/realKnownCause/machine_temperature_system_failure.csv --labels $(NAB)/labels/combined_windows.json \
			--timestamp-policy file_order --series-config $$config --json $${config%.yaml}.json \
			| grep 'student AUROC' | sed "s|^|$$(basename $$config .yaml): |"; \
	done
