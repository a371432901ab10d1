# syntax=docker/dockerfile:1
# tollgate: a static binary on distroless, as a non-root user.
#   docker build -t tollgate .
#   docker run -p 8080:8080 -v tollgate-data:/data \
#     -v $PWD/config.yaml:/etc/tollgate/config.yaml:ro --env-file tollgate.env tollgate

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tollgate ./cmd/tollgate
# /data must exist and belong to the runtime user: distroless has no shell to mkdir/chown.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
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
