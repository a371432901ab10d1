# syntax=docker/dockerfile:1
# tollgate: a static binary on distroless, as a non-root user.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t tollgate .
#   docker run -p 8080:8080 -v tollgate-data:/data \
#     -v $PWD/tollgate:/etc/tollgate:ro --env-file tollgate.env tollgate
# (the config's directory is mounted, not the file: an editor that replaces
# the file would otherwise leave the container reading the old one.)
# The config must listen on ":8080" and keep its store under /data
# (store.path: /data/tollgate.db). One gateway per store file: bbolt locks it.
# cmd/tollgate/docker_test.go builds the binary exactly as below and runs it
# as this image does; keep the two in step.

# Base images are pinned by digest, so a build is reproducible and a
# retagged image cannot slip in; to update one:
#   docker buildx imagetools inspect golang:1.26   (or: crane digest golang:1.26)
# The build runs on the builder's own platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# VERSION: the git tag (see the top); "dev" when built without it.
ARG VERSION=dev
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tollgate ./cmd/tollgate
# /data must exist and belong to the runtime user: distroless has no shell to mkdir/chown.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

# distroless/static: CA certificates and time zones, no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/tollgate /usr/local/bin/tollgate
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tollgate", "healthcheck", "-config", "/etc/tollgate/config.yaml"]
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "-config", "/etc/tollgate/config.yaml"]
