# Shears: shears-server, shears-worker and shearsctl in one image (the Kubernetes manifests in
# deploy/ pick the process by its command).
#
#   docker build -t shears:0.1.0-cpu .
#   docker build -t shears:0.1.0-cuda \
#     --build-arg LIBTORCH_URL=https://download.pytorch.org/libtorch/cu121/libtorch-cxx11-abi-shared-with-deps-2.1.2%2Bcu121.zip .
#
# The build stage runs what CI runs (`make test` starts with these two): scripts/install-deps.sh
# and `make build`. With LIBTORCH_URL the engine builds against that LibTorch instead of
# Debian's CPU one; it must be a cxx11-ABI build, so that it links with Debian's gRPC and
# protobuf, and its CUDA major version must match the toolkit installed beside it.

ARG DEBIAN_IMAGE=debian:12

FROM ${DEBIAN_IMAGE} AS build
ARG LIBTORCH_URL=""
ARG CUDA_TOOLKIT=cuda-toolkit-12-1
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh
# A CUDA LibTorch, and the CUDA toolkit its CMake configuration looks for, from NVIDIA's Debian 12
# repository.
RUN if [ -n "$LIBTORCH_URL" ]; then \
      apt-get install -y -qq --no-install-recommends curl unzip ca-certificates && \
      curl -fsSL -o /tmp/cuda-keyring.deb \
        https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb && \
      dpkg -i /tmp/cuda-keyring.deb && apt-get update -qq && \
      apt-get install -y -qq --no-install-recommends "$CUDA_TOOLKIT" && \
      curl -fsSL -o /tmp/libtorch.zip "$LIBTORCH_URL" && unzip -q /tmp/libtorch.zip -d /opt && \
      rm /tmp/libtorch.zip /tmp/cuda-keyring.deb; \
    fi
COPY . .
RUN make build BUILD_DIR=/src/build \
      CMAKE_ARGS="$([ -n "$LIBTORCH_URL" ] && echo -DCMAKE_PREFIX_PATH=/opt/libtorch -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)" && \
    mkdir -p /opt/shears/bin /opt/shears/lib && \
    cp build/server/shears-server build/worker/shears-worker build/client/shearsctl /opt/shears/bin/ && \
    if [ -d /opt/libtorch/lib ]; then cp -a /opt/libtorch/lib/. /opt/shears/lib/; fi

FROM ${DEBIAN_IMAGE}
# The shared libraries the three binaries link (apt brings what those need in turn). With a CUDA
# LibTorch its libraries, CUDA runtime included, come from the build stage into /opt/shears/lib;
# the driver comes from the node (NVIDIA container toolkit).
RUN apt-get update -qq && \
    apt-get install -y -qq --no-install-recommends ca-certificates \
      libtorch1.13 libopenblas0-openmp libxgboost0 libgrpc++1.51 libprotobuf32 libabsl20220623 libsqlite3-0 libpq5 libcurl4 \
      libpcre2-8-0 libicu72 libprometheus-cpp-core1.0 && \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/shears /opt/shears
ENV PATH=/opt/shears/bin:$PATH \
    LD_LIBRARY_PATH=/opt/shears/lib
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/shears shears && mkdir -p /scratch && chown shears /scratch
USER shears
WORKDIR /var/lib/shears
EXPOSE 50051 9090 9091
CMD ["shears-server", "--listen=0.0.0.0:50051", "--db=/var/lib/shears/shears.db", "--metrics-listen=0.0.0.0:9090"]
