# syntax=docker/dockerfile:1
# Images of the two binaries, statically linked (glibc with crt-static) on
# distroless/static:nonroot. Build the binaries first (no Rust toolchain inside the image
# build):
#   hack/build-static.sh
#   docker build --target operator -t ghcr.io/mvdns/mvdns-operator:dev .
#   docker build --target dns      -t ghcr.io/mvdns/mvdns-server:dev .
# Without a container engine, hack/image.sh assembles the same kind of image (an OCI
# layout: user 65532, entrypoint /usr/local/bin/<name>) from the binary.
ARG TARGET_DIR=target/x86_64-unknown-linux-gnu/release/stripped
ARG BASE=gcr.io/distroless/static:nonroot

FROM ${BASE} AS operator
ARG TARGET_DIR
LABEL org.opencontainers.image.title="mvdns-operator" \
      org.opencontainers.image.description="mvdns operator: healthy values of MultiValueRecordSets into their status" \
      org.opencontainers.image.source="https://github.com/mvdns/mvdns" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --chmod=0755 ${TARGET_DIR}/mvdns-operator /usr/local/bin/mvdns-operator
USER 65532:65532
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/mvdns-operator"]

FROM ${BASE} AS dns
ARG TARGET_DIR
LABEL org.opencontainers.image.title="mvdns-server" \
      org.opencontainers.image.description="mvdns authoritative DNS server for MultiValueRecordSets" \
      org.opencontainers.image.source="https://github.com/mvdns/mvdns" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --chmod=0755 ${TARGET_DIR}/mvdns-server /usr/local/bin/mvdns-server
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["/usr/local/bin/mvdns-server"]
