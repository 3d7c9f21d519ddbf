# likesd container image: a static binary on an empty (scratch) base, run as
# a non-root user.
#
#   docker build -t likesd .                                  # builds from source (golang image)
#   make build && docker build --target prebuilt -t likesd .  # takes bin/likesd from the host
#
# Both final stages are runtime-base plus the binary: the image users get is
# the same whichever way the binary was made. The prebuilt target lets a
# machine with no registry (CI here) build the image: the legacy builder runs
# only the stages up to the target, so the golang stage is never pulled.

ARG GO_VERSION=1.26

# Everything about the runtime except the binary.
FROM scratch AS runtime-base
LABEL org.opencontainers.image.title="likesd" \
      org.opencontainers.image.description="Clustered likes counter: G-set CRDT over memberlist gossip"
# 65532 is the conventional "nonroot" uid of distroless images.
USER 65532:65532
# HTTP API; memberlist gossip uses TCP (push/pull, joins) and UDP (gossip, probes).
EXPOSE 8080/tcp 9090/tcp 7946/tcp 7946/udp
ENV LIKESD_HTTP_ADDR=:8080 \
    LIKESD_GOSSIP_ADDR=0.0.0.0:7946
# Where deployments mount the data dir (--data-dir, set by them; none by
# default): empty and owned by 65532, so a Docker or Compose volume mounted
# here starts writable by likesd (deploy/datadir/README.md).
COPY --chown=65532:65532 deploy/datadir /var/lib/likesd
# The same empty directory where the compose file keeps the gossip key: a
# volume mounted here starts writable by likesd keygen. Kubernetes mounts
# the key's Secret over it.
COPY --chown=65532:65532 deploy/datadir /etc/likesd
ENTRYPOINT ["/likesd"]

# The binary built on the host: make build (CGO_ENABLED=0, version stamped).
FROM runtime-base AS prebuilt
COPY bin/likesd /likesd

# The binary built from source.
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/likesd ./cmd/likesd

FROM runtime-base AS runtime
COPY --from=build /out/likesd /likesd
