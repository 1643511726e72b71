# weir's container image: one static binary that runs any target
# (`weir edge`, `weir stream`, `weir sink`, `weir all`, `weir broker`).
#
#   docker build -t weir --build-arg VERSION=$(git describe --always) .
#   docker run -p 9480:9480 weir all

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
	-o /out/weir ./services/weir

# Alpine rather than a distroless base: its busybox wget serves the
# container health checks of docker-compose.yml.
FROM alpine:3.22
RUN addgroup -S -g 10001 weir \
	&& adduser -S -D -u 10001 -G weir -h /var/lib/weir weir \
	&& mkdir -p /var/lib/weir /etc/weir \
	&& chown weir:weir /var/lib/weir
COPY --from=build /out/weir /usr/local/bin/weir
USER 10001:10001
WORKDIR /var/lib/weir
# Inside a container weir must listen on every interface and keep its
# state in the volume.
ENV WEIR_HTTP_ADDR=0.0.0.0:9480 \
	WEIR_DATA_DIR=/var/lib/weir
EXPOSE 9480
VOLUME ["/var/lib/weir"]
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["all"]
