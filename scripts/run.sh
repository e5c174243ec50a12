#!/usr/bin/env bash
# `make run`: the whole system on 127.0.0.1 — throwaway PostgreSQL and Redis, the control plane
# on :8080, data nodes on :8081 and :8082, a system admin, a demo tenant, collection and token.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/deps.sh

for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "run: installing $tool" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >&2
  }
done

RUN="$ROOT/var/run"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "run: stopping" >&2
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  deps_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$RUN" && mkdir -p "$RUN"
deps_start
make -s build

secret() { head -c "$1" /dev/urandom | base64 | tr -d '/+=\n' | head -c "$1"; }
BR_URL=http://127.0.0.1:8080
ADMIN_EMAIL=admin@example.org
ADMIN_PASSWORD=$(secret 20)
HEALTH_CHECK_CODE=$(secret 16)
METRICS_CODE=$(secret 16)
GOSSIP_KEY=$(head -c 32 /dev/urandom | base64)
NODE_SECRET=$(secret 32)

BR_DATABASE_URL="$DATABASE_URL" BR_REDIS_URL="$REDIS_URL" BR_LISTEN=127.0.0.1:8080 BR_BASE_URL="$BR_URL" \
BR_APP_ENV=dev BR_HEALTH_CHECK_CODE="$HEALTH_CHECK_CODE" BR_METRICS_CODE="$METRICS_CODE" \
BR_GOSSIP_BIND=127.0.0.1:7946 BR_GOSSIP_KEY="$GOSSIP_KEY" BR_NODE_NAME=controlplane-1 \
BR_DATA_DIR="$RUN/controlplane" BR_CREATE_SIGNING_KEY=true BR_NODE_SECRET="$NODE_SECRET" \
BR_BOOTSTRAP_ADMIN_EMAIL="$ADMIN_EMAIL" BR_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  bin/controlplane >"$RUN/controlplane.log" 2>&1 &
pids+=($!)

wait_up() {
  for _ in $(seq 100); do curl -fsS "$1/livez" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "run: $1 did not come up; see $RUN/*.log" >&2; tail -20 "$RUN"/*.log >&2; return 1
}
wait_up "$BR_URL"
for i in 1 2; do
  mkdir -p "$RUN/datanode-$i/disk"
  port=$((8080 + i))
  BR_LISTEN=127.0.0.1:$port BR_NODE_NAME=datanode-$i BR_PUBLIC_URL=http://127.0.0.1:$port BR_ZONE=local \
  BR_DISKS="$RUN/datanode-$i/disk" BR_RESERVE=1GiB BR_GOSSIP_BIND=127.0.0.1:$((7946 + i)) \
  BR_GOSSIP_JOIN=127.0.0.1:7946 BR_GOSSIP_KEY="$GOSSIP_KEY" BR_CONTROLPLANE_URL="$BR_URL" \
  BR_NODE_SECRET="$NODE_SECRET" BR_VERIFY_KEYS="$RUN/controlplane/verify-key.pem" \
  BR_HEALTH_CHECK_CODE="$HEALTH_CHECK_CODE" \
    bin/datanode >"$RUN/datanode-$i.log" 2>&1 &
  pids+=($!)
done

wait_up http://127.0.0.1:8081
wait_up http://127.0.0.1:8082

gql() { # gql TOKEN QUERY [VARIABLES-JSON]
  local out
  out=$(curl -fsS "$BR_URL/graphql" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg q "$2" --argjson v "${3:-{\}}" '{query:$q, variables:$v}')")
  if [ "$(jq '.errors // [] | length' <<<"$out")" != 0 ]; then echo "run: GraphQL error: $out" >&2; return 1; fi
  echo "$out"
}

ADMIN_TOKEN=$(curl -fsS "$BR_URL/api/stable/auth/login" -H 'Content-Type: application/json' \
  -d "$(jq -n --arg u "$ADMIN_EMAIL" --arg p "$ADMIN_PASSWORD" '{username:$u, password:$p}')" | jq -r .data.token)
DEMO_TENANT_ID=$(gql "$ADMIN_TOKEN" 'mutation($in: CreateTenantInput!){ createTenant(input: $in) { id } }' \
  '{"in":{"name":"Demo Nonprofit","slug":"demo","quota":"100GiB"}}' | jq -r .data.createTenant.id)
# Placement needs the data nodes in the cluster view: wait until both are alive.
for _ in $(seq 100); do
  alive=$(gql "$ADMIN_TOKEN" '{ dataNodes { name state } }' | jq '[.data.dataNodes[] | select(.state == "alive")] | length')
  [ "$alive" -ge 2 ] && break
  sleep 0.2
done
DEMO_COLLECTION_ID=$(gql "$ADMIN_TOKEN" 'mutation($in: CreateCollectionInput!){ createCollection(input: $in) { collection { id } nodeName reason } }' \
  "$(jq -n --arg t "$DEMO_TENANT_ID" '{in:{tenantId:$t, id:"demo-backups", description:"Demo backups", maxBackupsCount:5, maxOneVersionSize:"2GiB", maxCollectionSize:"10GiB", strategy:"FIFO"}}')" \
  | jq -r .data.createCollection.collection.id)
DEMO_USER_PASSWORD=$(secret 20)
DEMO_USER_ID=$(gql "$ADMIN_TOKEN" 'mutation($in: CreateUserInput!){ createUser(input: $in) { id } }' \
  "$(jq -n --arg t "$DEMO_TENANT_ID" --arg p "$DEMO_USER_PASSWORD" '{in:{tenantId:$t, email:"backup@demo.example.org", password:$p, roles:["backupUploader","backupDownloader"]}}')" \
  | jq -r .data.createUser.id)
DEMO_TOKEN=$(gql "$ADMIN_TOKEN" 'mutation($u: ID!, $c: ID!){ issueToken(userId: $u, description: "demo upload token", ttl: "30d", scope: [{collection: $c, roles: [backupUploader, backupDownloader]}]) { token } }' \
  "$(jq -n --arg u "$DEMO_USER_ID" --arg c "$DEMO_COLLECTION_ID" '{u:$u, c:$c}')" | jq -r .data.issueToken.token)

cat >"$RUN/stack.env" <<ENV
BR_URL=$BR_URL
ADMIN_EMAIL=$ADMIN_EMAIL
ADMIN_PASSWORD=$ADMIN_PASSWORD
HEALTH_CHECK_CODE=$HEALTH_CHECK_CODE
METRICS_CODE=$METRICS_CODE
DEMO_TENANT_ID=$DEMO_TENANT_ID
DEMO_COLLECTION_ID=$DEMO_COLLECTION_ID
DEMO_TOKEN=$DEMO_TOKEN
ENV

cat <<MSG

Backup Repository is running (logs in var/run/*.log; settings in var/run/stack.env).

  Console:   $BR_URL/console   (log in: $ADMIN_EMAIL / $ADMIN_PASSWORD)
  Health:    curl '$BR_URL/health?code=$HEALTH_CHECK_CODE'
  Metrics:   curl '$BR_URL/metrics/backup_repository_report/influxdb?code=$METRICS_CODE'
  Log in:    curl -s $BR_URL/api/stable/auth/login -H 'Content-Type: application/json' \\
               -d '{"username":"$ADMIN_EMAIL","password":"$ADMIN_PASSWORD"}'

Upload a backup through the front door (an OpenPGP-encrypted file in real use):
  source var/run/stack.env
  curl -sS -X POST -T ./my-backup.tar.gz.gpg -H "Authorization: Bearer \$DEMO_TOKEN" \\
    \$BR_URL/api/stable/repository/collection/\$DEMO_COLLECTION_ID/versions
Download the newest version back:
  curl -sS -o restored.tar.gz.gpg -H "Authorization: Bearer \$DEMO_TOKEN" \\
    \$BR_URL/api/stable/repository/collection/\$DEMO_COLLECTION_ID/versions/latest

Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
