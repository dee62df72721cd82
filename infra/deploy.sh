#!/usr/bin/env bash
# Deploy, update or tear down one sparkgate stage with the CDK CLI (v2, pinned).
#
#   infra/deploy.sh ACTION [STAGE]
#
# ACTION: bootstrap | synth | diff | deploy | destroy     STAGE: dev (default) | prod
#
# Environment (all optional):
#   EXISTING_CLUSTER_ID  run steps on this EMR cluster instead of creating one (j-...)
#   EMR_SUBNET_ID        subnet for the new cluster (default: the account's default VPC)
#   CDK_ARGS             extra arguments for the cdk CLI, e.g. "-c stepConcurrency=20"
#   AWS_PROFILE / AWS_REGION  the account and region to deploy to (the usual AWS variables)
#   CDK_CLI              the command to run the CDK CLI (default: npx --yes aws-cdk@2)
set -euo pipefail

action="${1:-}"
stage="${2:-${STAGE:-dev}}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cdk="${CDK_CLI:-npx --yes aws-cdk@2}"

case "$stage" in
    dev | prod) ;;
    *) echo "deploy.sh: stage must be dev or prod, not '$stage'" >&2; exit 2 ;;
esac

if [[ ! -x "$here/../.venv/bin/python" ]]; then
    echo "deploy.sh: no .venv at the repo root: run 'make install' first" >&2
    exit 2
fi

context=(-c "stage=$stage")
[[ -n "${EXISTING_CLUSTER_ID:-}" ]] && context+=(-c "existingClusterId=$EXISTING_CLUSTER_ID")
[[ -n "${EMR_SUBNET_ID:-}" ]] && context+=(-c "emrSubnetId=$EMR_SUBNET_ID")
# shellcheck disable=SC2206  # CDK_ARGS is split on purpose
extra=(${CDK_ARGS:-})

cd "$here"
case "$action" in
    bootstrap)
        # Once per account and region: the bucket and roles the CDK CLI deploys assets with.
        $cdk bootstrap "${context[@]}" "${extra[@]}"
        ;;
    synth)
        $cdk synth "${context[@]}" --quiet "${extra[@]}"
        echo "template: $here/cdk.out/$stage.template.json"
        ;;
    diff)
        $cdk diff "${context[@]}" "${extra[@]}"
        ;;
    deploy)
        # broadening: ask before any IAM or security-group change that widens access.
        $cdk deploy "${context[@]}" --require-approval "${REQUIRE_APPROVAL:-broadening}" \
            --outputs-file "$here/cdk.out/outputs-$stage.json" "${extra[@]}"
        echo "outputs: $here/cdk.out/outputs-$stage.json"
        ;;
    destroy)
        $cdk destroy "${context[@]}" "${extra[@]}"
        ;;
    *)
        sed -n '2,13p' "$here/deploy.sh" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
