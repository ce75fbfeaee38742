#!/usr/bin/env bash
# meshplane and bookinfo on a kind cluster, from a checkout: the steps of README.md as one
# script. Needs kind, kubectl and docker (a running engine); nothing else on the host (the
# CRDs, join tokens and root certificate come from the meshplane image and the running
# control plane). Re-running it is safe: each step leaves what is already there.
#
#   kind-cluster/up.sh            # cluster "meshplane", then http://127.0.0.1:8080/productpage
#   CLUSTER=demo kind-cluster/up.sh
#   kind delete cluster --name meshplane    # all gone
set -euo pipefail

CLUSTER="${CLUSTER:-meshplane}"
IMAGE="${IMAGE:-meshplane:dev}"
TOKEN_TTL="${TOKEN_TTL:-720h}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BOOKINFO="$ROOT/examples/bookinfo"
# The service accounts that get a join token: bookinfo's (sidecars), the gateway's (a router).
BOOKINFO_ACCOUNTS=(bookinfo-details bookinfo-ratings bookinfo-reviews bookinfo-productpage)
GATEWAY_ACCOUNT=istio-ingressgateway-service-account

say() { printf '==> %s\n' "$*"; }
fail() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "kind-$CLUSTER" "$@"; }

check_tools() {
  local missing=()
  for tool in kind kubectl docker; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    fail "missing on PATH: ${missing[*]} (this script needs kind, kubectl and docker)"
  fi
  docker info >/dev/null 2>&1 || fail "docker is installed but its engine does not answer"
  say "kind, kubectl and docker found"
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "kind cluster $CLUSTER exists"
  else
    say "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --config "$HERE/kind.yaml"
  fi
}

build_image() {
  say "building $IMAGE"
  # The context is only what the image takes (never .venv), with or without BuildKit.
  (cd "$ROOT" && tar -c --exclude=__pycache__ pyproject.toml meshplane kind-cluster/Dockerfile) \
    | docker build -f kind-cluster/Dockerfile -t "$IMAGE" -
  kind load docker-image "$IMAGE" --name "$CLUSTER"
}

install_crds() {
  say "installing the Istio CRDs (meshplane crds)"
  docker run --rm "$IMAGE" meshplane crds | k apply -f -
  k wait --for condition=established --timeout=60s crd -l app.kubernetes.io/part-of=meshplane
}

start_control_plane() {
  say "starting meshplane in istio-system"
  k apply -f "$HERE/meshplane.yaml"
  k -n istio-system rollout status deploy/meshplane --timeout=180s
}

# Run a command in the control plane's container (same uid, same state dir as serve).
in_meshplane() { k -n istio-system exec deploy/meshplane -c discovery -- "$@"; }

# `kubectl create` made idempotent: NAMESPACE then create's own arguments, applied.
apply_created() {
  local namespace=$1
  shift
  k -n "$namespace" create "$@" --dry-run=client -o yaml | k apply -f -
}

# A join token signed with the key serve checks them with: NAMESPACE ACCOUNT TYPE.
mint_token() {
  in_meshplane meshplane token --state-dir /var/lib/meshplane --namespace "$1" \
    --service-account "$2" --type "$3" --ttl "$TOKEN_TTL"
}

issue_credentials() {
  say "join tokens and root certificate for default and istio-system"
  local root token args=() sa namespace
  root="$(in_meshplane cat /var/lib/meshplane/root-cert.pem)"
  # Each token is assigned on its own line: a failed `meshplane token` then stops the script
  # (set -e) instead of leaving an empty token in the Secret.
  for sa in "${BOOKINFO_ACCOUNTS[@]}"; do
    token="$(mint_token default "$sa" sidecar)"
    args+=("--from-literal=$sa=$token")
  done
  apply_created default secret generic meshplane-join-tokens "${args[@]}"
  token="$(mint_token istio-system "$GATEWAY_ACCOUNT" router)"
  apply_created istio-system secret generic meshplane-join-tokens \
    "--from-literal=$GATEWAY_ACCOUNT=$token"
  for namespace in default istio-system; do
    apply_created "$namespace" configmap meshplane-ca-root-cert "--from-literal=root-cert.pem=$root"
  done
}

persist_ca() {
  if k -n istio-system get secret meshplane-ca >/dev/null 2>&1; then
    say "CA already kept in Secret istio-system/meshplane-ca"
    return
  fi
  say "keeping the CA in Secret istio-system/meshplane-ca (restarts reuse it)"
  local dir
  dir="$(mktemp -d)"
  # The keys pass through the host only here, in a private directory removed right after.
  chmod 700 "$dir"
  in_meshplane bash -c 'cd /var/lib/meshplane && tar -cf - ./*.pem' | tar -x -C "$dir"
  k -n istio-system create secret generic meshplane-ca --from-file="$dir" \
    || { rm -rf "$dir"; fail "could not create Secret meshplane-ca"; }
  rm -rf "$dir"
}

deploy_bookinfo() {
  say "deploying the ingress gateway and bookinfo (sidecars bootstrapped by meshplane)"
  k apply -f "$HERE/ingress-gateway.yaml"
  # examples/bookinfo's Services and Istio config; its deployments.yaml is for `meshplane up`
  # (no image), bookinfo.yaml here is the cluster's version of it.
  k apply -f "$BOOKINFO/services.yaml" -f "$HERE/bookinfo.yaml"
  k apply -f "$BOOKINFO/destination-rule-all.yaml" -f "$BOOKINFO/virtual-service-reviews.yaml" \
    -f "$BOOKINFO/bookinfo-gateway.yaml" -f "$BOOKINFO/peer-authentication.yaml"
  k -n istio-system rollout status deploy/istio-ingressgateway --timeout=180s
  local deployment
  for deployment in details-v1 ratings-v1 reviews-v1 reviews-v2 reviews-v3 productpage-v1; do
    k rollout status "deploy/$deployment" --timeout=180s
  done
}

check_page() {
  local url=http://127.0.0.1:8080/productpage attempt
  if ! command -v curl >/dev/null 2>&1; then
    say "no curl here: open $url"
    return
  fi
  for attempt in $(seq 1 30); do
    if curl -fsS -o /dev/null "$url"; then
      say "mesh ready: $url (attempt $attempt)"
      return
    fi
    sleep 2
  done
  fail "$url did not answer within 60 s; see README.md, 'When it does not work'"
}

main() {
  check_tools
  create_cluster
  build_image
  install_crds
  start_control_plane
  issue_credentials
  persist_ca
  deploy_bookinfo
  check_page
  say "try: kubectl --context kind-$CLUSTER -n istio-system port-forward deploy/meshplane 15014"
  say "     then meshplane proxy-status (or curl localhost:15014/debug/syncz)"
}

main "$@"
