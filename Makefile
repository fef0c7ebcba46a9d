# The two quick-start commands: `make demo` and `make test`. Each installs what is missing first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
# Extra CMake arguments, e.g. -DCMAKE_PREFIX_PATH=/opt/libtorch for a CUDA LibTorch (the Dockerfile).
CMAKE_ARGS ?=
# Where the 7B-shaped bench writes its outputs (needs ~45 GB free).
SEVEN_B_WORK ?= /tmp/shears-7b-bench

.PHONY: all deps build peers test test-quick demo bench clean

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

test: build peers
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# The unit tests alone (ctest -L unit): rules, masks, formats, the job store; seconds on a warm
# build. `ctest -L engine` and `ctest -L service` run the other two labels.
test-quick: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -L unit

demo: build
	scripts/demo.sh $(BUILD_DIR)

# Long measurements (speed, memory) that print their figures and ratios.
bench: build peers
	@echo "== $(BUILD_DIR)/bench/tokenizer_bench tests/data/tiny-llama"
	$(BUILD_DIR)/bench/tokenizer_bench tests/data/tiny-llama
	@echo "== $(BUILD_DIR)/bench/storage_bench $(BUILD_DIR) /tmp/shears-storage-bench 256"
	$(BUILD_DIR)/bench/storage_bench $(BUILD_DIR) /tmp/shears-storage-bench 256
	$(BUILD_DIR)/bench/peak_rss_bench $(BUILD_DIR) /tmp/shears-bench
	@echo "== $(BUILD_DIR)/bench/method_table $(BUILD_DIR) /tmp/shears-method-bench tests/data/tiny-llama 128"
	$(BUILD_DIR)/bench/method_table $(BUILD_DIR) /tmp/shears-method-bench tests/data/tiny-llama 128
	@echo "== $(BUILD_DIR)/bench/structured_table $(BUILD_DIR) /tmp/shears-structured-bench tests/data/tiny-llama tests/data/tiny-llama-deep tests/data/tiny-llama-mha"
	$(BUILD_DIR)/bench/structured_table $(BUILD_DIR) /tmp/shears-structured-bench tests/data/tiny-llama tests/data/tiny-llama-deep tests/data/tiny-llama-mha
	@echo "== $(BUILD_DIR)/bench/search_table $(BUILD_DIR) /tmp/shears-search-bench tests/data/tiny-llama"
	$(BUILD_DIR)/bench/search_table $(BUILD_DIR) /tmp/shears-search-bench tests/data/tiny-llama
	@echo "== bench/reference_table.sh $(BUILD_DIR) /tmp/shears-reference-bench (against the published algorithms; writes a 7B-shaped slice into ~/.cache/shears-bench once)"
	bench/reference_table.sh $(BUILD_DIR) /tmp/shears-reference-bench
	@echo "== bench/seven_b.sh $(BUILD_DIR) $(SEVEN_B_WORK) (Llama-2-7B-shaped, ~45 GB of disk; the checkpoint is kept in ~/.cache/shears-bench)"
	bench/seven_b.sh $(BUILD_DIR) $(SEVEN_B_WORK)

clean:
	rm -rf $(BUILD_DIR) .demo
