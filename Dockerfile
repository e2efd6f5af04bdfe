# syntax=docker/dockerfile:1
# nftpolicy agent image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t REPO:TAG .
#
# The build stage is plain `go build`: install/ (TestDockerfile_BuildCommand)
# runs the very RUN line below on every `make test`, since our machines have
# no container engine. No nft binary is shipped: the agent speaks netlink.

ARG GO_VERSION=1.26.10

# Build on the builder's platform, cross-compile for the target (pure Go).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ENV GOOS=${TARGETOS} GOARCH=${TARGETARCH} GOFLAGS=-mod=readonly
WORKDIR /src
# Dependencies first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o / ./cmd/nftpolicy ./cmd/nftpolicy-cni

# Runtime: distroless static = CA certificates, tzdata, /etc/passwd, nothing
# else (no shell, no package manager, no libc). The static binary needs none
# of it but the CA bundle is harmless.
#
# User: root (uid 0), deliberately. The agent needs CAP_NET_ADMIN to program
# nftables over netlink; Kubernetes can add a capability to a container but
# a non-root process loses it at execve (Kubernetes sets no ambient
# capabilities, and file capabilities are blocked by
# allowPrivilegeEscalation=false). So the DaemonSet runs it as uid 0 with
# every capability dropped except NET_ADMIN, a read-only root file system and
# no privilege escalation (config/agent/daemonset.yaml).
FROM gcr.io/distroless/static-debian12:latest
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="nftpolicy" \
      org.opencontainers.image.description="Kubernetes NetworkPolicy agent enforcing policy with nftables" \
      org.opencontainers.image.source="https://github.com/nftpolicy/nftpolicy" \
      org.opencontainers.image.url="https://github.com/nftpolicy/nftpolicy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /nftpolicy /nftpolicy
# The chained CNI plugin; the DaemonSet's install-cni init container copies
# it onto the node.
COPY --from=build /nftpolicy-cni /nftpolicy-cni
USER 0:0
ENTRYPOINT ["/nftpolicy"]
