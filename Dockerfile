# Builds the lok8s provisioning service. Used by docker-compose.yml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/lok8s-server ./cmd/server

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lok8s-server /lok8s-server
EXPOSE 8080
# The same check docker-compose.yml runs (Kubernetes uses the chart's probes).
HEALTHCHECK --interval=10s --timeout=3s CMD ["/lok8s-server", "healthcheck"]
ENTRYPOINT ["/lok8s-server"]
CMD ["serve"]
