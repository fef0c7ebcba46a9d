# The two quick-start commands: `make demo` and `make test`. Each installs what is missing first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
# Extra CMake arguments, e.g. -DCMAKE_PREFIX_PATH=/opt/libtorch for a CUDA LibTorch (the Dockerfile).
CMAKE_ARGS ?=
# The per-block sparsity bench's models (bench/models/README.md): the development set, then the
# held-out llama the search's settings were never chosen on.
ALLOCATION_MODELS ?= llama-8=tests/data/tiny-llama-deep llama-12=bench/models/llama-12 gpt2-6=bench/models/gpt2-6 \
  opt-6=bench/models/opt-6 heldout-llama-10=bench/models/heldout-llama-10
# Where the 7B-shaped bench writes its outputs (needs ~45 GB free).
SEVEN_B_WORK ?= /tmp/shears-7b-bench

# The sanitized tree (clang, ASan, UBSan, libFuzzer): make test-asan and make fuzz.
ASAN_DIR ?= build-asan
# How long `make fuzz` runs each fuzz target, and `make test` its smoke run.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15

.PHONY: all deps build peers test test-quick test-asan asan-build fuzz chaos chaos-replicas demo bench clean

all: build

deps:
	scripts/install-deps.sh

# Release: anything that runs a model wants an optimised engine.
build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j$(JOBS)

# The peers the integration tests start: s3rver and the Node client (npm), Prometheus and kubectl
# (Debian).
peers:
	scripts/install-test-peers.sh $(BUILD_DIR)/peers

test: build peers asan-build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)
	@echo "== fuzz smoke: each target for $(FUZZ_SMOKE_SECONDS) s (make fuzz runs them for $(FUZZ_SECONDS) s)"
	scripts/fuzz.sh $(ASAN_DIR) $(FUZZ_SMOKE_SECONDS)

# The unit and engine tests and the fuzz targets, built with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer (-O1; every report fatal).
asan-build: deps
	CC=clang CXX=clang++ cmake -S . -B $(ASAN_DIR) -DSHEARS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Release \
	  "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1 -DNDEBUG"
	cmake --build $(ASAN_DIR) -j$(JOBS) --target shears_sanitized_tests

test-asan: asan-build peers
	ln -sfn $(abspath $(BUILD_DIR))/peers $(ASAN_DIR)/peers  # the same Node peers
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) -L 'unit|engine'

# Each parser of outside input under libFuzzer for FUZZ_SECONDS (fuzz/CMakeLists.txt lists them).
fuzz: asan-build
	scripts/fuzz.sh $(ASAN_DIR) $(FUZZ_SECONDS)

# The unit tests alone (ctest -L unit): rules, masks, formats, the job store; seconds on a warm
# build. `ctest -L engine` and `ctest -L service` run the other two labels.
test-quick: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -L unit

# The fault-injection suite: CHAOS_TRIALS trials of kill -9 (worker, server, server as a job
# publishes), gentle restarts, a store that fills and an S3 store that dies mid-upload, each
# checked by the invariant checker (tests/chaos/chaos_main.cc says which invariants).
CHAOS_TRIALS ?= 54
# Then CHAOS_REPLICA_TRIALS trials of three server replicas on one PostgreSQL and three workers:
# kill -9 of replicas and workers, a replica drained, a PostgreSQL restart.
CHAOS_REPLICA_TRIALS ?= 24
chaos: build peers
	$(BUILD_DIR)/tests/shears-chaos --trials $(CHAOS_TRIALS)
	$(MAKE) chaos-replicas

chaos-replicas: build peers
	scripts/test-postgres.sh start $(BUILD_DIR)/postgres
	$(BUILD_DIR)/tests/shears-chaos --replicas 3 --trials $(CHAOS_REPLICA_TRIALS); \
	  status=$$?; scripts/test-postgres.sh stop $(BUILD_DIR)/postgres; exit $$status

demo: build
	scripts/demo.sh $(BUILD_DIR)

# Long measurements (speed, memory) that print their figures and ratios.
bench: build peers
	@echo "== $(BUILD_DIR)/bench/tokenizer_bench tests/data/tiny-llama"
	$(BUILD_DIR)/bench/tokenizer_bench tests/data/tiny-llama
	@echo "== $(BUILD_DIR)/bench/store_bench /tmp/shears-store-bench 2000 1000 (the job stores: SQLite, PostgreSQL with 1 and 3 replicas)"
	scripts/test-postgres.sh start $(BUILD_DIR)/postgres
	$(BUILD_DIR)/bench/store_bench /tmp/shears-store-bench 2000 1000; \
	  status=$$?; scripts/test-postgres.sh stop $(BUILD_DIR)/postgres; exit $$status
	@echo "== $(BUILD_DIR)/bench/storage_bench $(BUILD_DIR) /tmp/shears-storage-bench 256"
	$(BUILD_DIR)/bench/storage_bench $(BUILD_DIR) /tmp/shears-storage-bench 256
	$(BUILD_DIR)/bench/peak_rss_bench $(BUILD_DIR) /tmp/shears-bench
	@echo "== $(BUILD_DIR)/bench/method_table $(BUILD_DIR) /tmp/shears-method-bench tests/data/tiny-llama 128"
	$(BUILD_DIR)/bench/method_table $(BUILD_DIR) /tmp/shears-method-bench tests/data/tiny-llama 128
	@echo "== $(BUILD_DIR)/bench/structured_table $(BUILD_DIR) /tmp/shears-structured-bench tests/data/tiny-llama tests/data/tiny-llama-deep tests/data/tiny-llama-mha"
	$(BUILD_DIR)/bench/structured_table $(BUILD_DIR) /tmp/shears-structured-bench tests/data/tiny-llama tests/data/tiny-llama-deep tests/data/tiny-llama-mha
	@echo "== $(BUILD_DIR)/bench/allocation_table $(BUILD_DIR) /tmp/shears-allocation-bench $(ALLOCATION_MODELS) (uniform, OWL and the predictor search)"
	$(BUILD_DIR)/bench/allocation_table $(BUILD_DIR) /tmp/shears-allocation-bench $(ALLOCATION_MODELS)
	@echo "== $(BUILD_DIR)/bench/search_table $(BUILD_DIR) /tmp/shears-search-bench tests/data/tiny-llama (FFN neuron shares)"
	$(BUILD_DIR)/bench/search_table $(BUILD_DIR) /tmp/shears-search-bench tests/data/tiny-llama
	@echo "== bench/reference_table.sh $(BUILD_DIR) /tmp/shears-reference-bench (against the published algorithms; writes a 7B-shaped slice into ~/.cache/shears-bench once)"
	bench/reference_table.sh $(BUILD_DIR) /tmp/shears-reference-bench
	@echo "== bench/seven_b.sh $(BUILD_DIR) $(SEVEN_B_WORK) (Llama-2-7B-shaped, ~45 GB of disk; the checkpoint is kept in ~/.cache/shears-bench)"
	bench/seven_b.sh $(BUILD_DIR) $(SEVEN_B_WORK)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) .demo
