#!/usr/bin/env bash
# Builds the two images, backup-repository/controlplane and backup-repository/datanode, from
# static binaries compiled here; nothing is pulled from a registry (both images are FROM scratch).
#
#   deploy/docker/build.sh            # tags :dev
#   TAG=1.2.0 deploy/docker/build.sh  # tags :1.2.0 and stamps the version into the binaries
#
# GO (default: go) and DOCKER (default: docker) choose the tools.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TAG=${TAG:-dev}
GO=${GO:-go}
DOCKER=${DOCKER:-docker}

CTX=$(mktemp -d "${TMPDIR:-/tmp}/br-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT

(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$TAG" \
  -o "$CTX/" ./controlplane/cmd/controlplane ./datanode/cmd/datanode)

# The only user the images know: 65532, the customary "nonroot" id of distroless images.
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$CTX/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$CTX/group"
mkdir -p "$CTX/empty"

for name in controlplane datanode; do
  echo "build.sh: building backup-repository/$name:$TAG" >&2
  "$DOCKER" build --quiet --label "org.opencontainers.image.version=$TAG" \
    -f "$ROOT/deploy/docker/Dockerfile.$name" -t "backup-repository/$name:$TAG" "$CTX" >/dev/null
done
echo "build.sh: built backup-repository/controlplane:$TAG and backup-repository/datanode:$TAG" >&2
