# syntax=docker/dockerfile:1
# vm-import-controller image: Debian 12 (bookworm) slim, the controller built with the project's
# release preset, run as a non-root user. Build from the repository root:
#   docker build -t ghcr.io/vm-import/vm-import-controller:0.1.0 .
# The Helm chart (deploy/helm/vm-import-controller) runs it with a read-only root filesystem and
# an emptyDir on /tmp.

ARG DEBIAN_IMAGE=debian:12-slim

# --- builder: the same Debian packages as CI (tools/install-deps.sh), the release preset --------
FROM ${DEBIAN_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY tools/install-deps.sh tools/install-deps.sh
RUN tools/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt CMakePresets.json ./
COPY cmake cmake
COPY src src
# Tests are not built here (they need the test world); warnings are still errors.
RUN cmake --preset release -DVMIMPORT_TESTS=OFF -DVMIMPORT_WERROR=ON \
 && cmake --build --preset release --target vm-import-controller \
 && install -D -m 0755 -s build/release/src/app/vm-import-controller /out/usr/bin/vm-import-controller

# --- runtime ------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# The shared libraries the controller links (cpp-httplib, yaml-cpp, pugixml, libcurl with
# OpenSSL, libdeflate, zlib, zstd, fmt, libvirt's client library for LibvirtSource, libnbd for
# warm migration's change tracker), CA
# certificates for sources without a caCert, and qemu-utils (qemu-img) for operators inspecting
# disks. tests/world/deploy_world_test.cc checks
# that this list covers every library the built binary needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libcpp-httplib0.11 \
      libcurl4 \
      libdeflate0 \
      libfmt9 \
      libnbd0 \
      libpugixml1v5 \
      libssl3 \
      libvirt0 \
      libyaml-cpp0.7 \
      libzstd1 \
      qemu-utils \
      zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 vmimport \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin vmimport
COPY --from=builder /out/ /
# Fails the build when a library is missing from the list above.
RUN ! ldd /usr/bin/vm-import-controller | grep 'not found' \
 && /usr/bin/vm-import-controller --help >/dev/null
USER 65532:65532
WORKDIR /tmp
# 8080: the disk image server (the Service's port); 8081: /healthz, /readyz, /metrics.
EXPOSE 8080 8081
ENTRYPOINT ["/usr/bin/vm-import-controller"]
CMD ["--image-server-address=0.0.0.0:8080", "--health-address=:8081"]
