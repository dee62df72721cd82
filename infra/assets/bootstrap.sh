#!/bin/bash
# EMR bootstrap action (runs on every node as the hadoop user, before the applications start).
#
# 1. Python 3.11, the version sparkgate is written for (EMR 7's default python3 is 3.9), and the
#    engine's Python dependencies. The cluster's spark-env sets PYSPARK_PYTHON=/usr/bin/python3.11.
#    Keep the package list in step with requirements-engine.txt (pyspark itself comes with EMR).
# 2. The instance metadata service is out of reach of user code: iptables REJECTs 169.254.169.254
#    (and the IPv6 endpoint fd00:ec2::254) for every uid from --kernel-uid-min up, the uids the engine
#    runs kernels (SparkSession + user code) under. A systemd timer re-asserts the rules every minute.
#    (Steps under runtime roles are kept from IMDS by EMR itself; the security configuration also
#    requires IMDSv2 with a hop limit of 1. This is the part that does not depend on either.)
# 3. kernel.yama.ptrace_scope=1: a process may ptrace, and read the memory of, its own descendants only.
# 4. Primary node only, when --supervisor-role-arn is given: the supervisor credential broker
#    (credential_broker.py from the read-only engine bundle) as a root systemd service, and
#    /etc/sparkgate/aws-config with the supervisor's profile (credential_process = the broker's client).
#
# Arguments (the stack passes them): --supervisor-role-arn ARN --bundle s3://<bucket>/engine/ --region R
#   [--supervisor-profile sparkgate-supervisor] [--supervisor-user hadoop] [--kernel-uid-min 200000]
set -euo pipefail

SUPERVISOR_ROLE_ARN=""
BUNDLE=""
REGION=""
SUPERVISOR_PROFILE="sparkgate-supervisor"
SUPERVISOR_USER="hadoop"
KERNEL_UID_MIN=200000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --supervisor-role-arn) SUPERVISOR_ROLE_ARN="$2"; shift 2 ;;
        --bundle) BUNDLE="$2"; shift 2 ;;
        --region) REGION="$2"; shift 2 ;;
        --supervisor-profile) SUPERVISOR_PROFILE="$2"; shift 2 ;;
        --supervisor-user) SUPERVISOR_USER="$2"; shift 2 ;;
        --kernel-uid-min) KERNEL_UID_MIN="$2"; shift 2 ;;
        *) echo "bootstrap.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ "$KERNEL_UID_MIN" =~ ^[0-9]+$ ]] || { echo "bootstrap.sh: --kernel-uid-min must be a number" >&2; exit 2; }
[[ "$SUPERVISOR_PROFILE" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "bootstrap.sh: bad --supervisor-profile" >&2; exit 2; }
[[ "$SUPERVISOR_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || { echo "bootstrap.sh: bad --supervisor-user" >&2; exit 2; }
[[ -z "$SUPERVISOR_ROLE_ARN" || "$SUPERVISOR_ROLE_ARN" =~ ^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$ ]] \
    || { echo "bootstrap.sh: bad --supervisor-role-arn" >&2; exit 2; }
[[ -z "$REGION" || "$REGION" =~ ^[a-z0-9-]+$ ]] || { echo "bootstrap.sh: bad --region" >&2; exit 2; }
[[ -z "$BUNDLE" || "$BUNDLE" =~ ^s3://[a-z0-9.-]+/ ]] || { echo "bootstrap.sh: bad --bundle" >&2; exit 2; }

# -- 1. Python and the engine's dependencies ---------------------------------------------------------
PY=/usr/bin/python3.11
if [[ ! -x "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
    sudo dnf install -y python3.11 python3.11-pip
fi
sudo "$PY" -m pip install --quiet 'pandas<3' pyarrow shapely Pillow numpy boto3

# -- 2. no IMDS for kernel uids --------------------------------------------------------------------
command -v iptables >/dev/null 2>&1 || sudo dnf install -y iptables-nft
sudo install -d -m 0755 /etc/sparkgate /usr/local/libexec/sparkgate
echo "$KERNEL_UID_MIN" | sudo tee /etc/sparkgate/kernel-uid-min >/dev/null
sudo tee /usr/local/libexec/sparkgate/imds-guard >/dev/null <<'GUARD'
#!/bin/bash
# Re-asserts: no uid from /etc/sparkgate/kernel-uid-min up reaches the instance metadata service.
set -u
range="$(cat /etc/sparkgate/kernel-uid-min)-4294967294"
ensure() {
    "$1" -w -C OUTPUT -d "$2" -m owner --uid-owner "$range" -j REJECT 2>/dev/null \
        || "$1" -w -I OUTPUT 1 -d "$2" -m owner --uid-owner "$range" -j REJECT
}
ensure iptables 169.254.169.254/32
if command -v ip6tables >/dev/null 2>&1; then
    ensure ip6tables fd00:ec2::254/128 || echo "imds-guard: no IPv6 rule (ip6tables failed)" >&2
fi
GUARD
sudo chmod 0755 /usr/local/libexec/sparkgate/imds-guard
sudo tee /etc/systemd/system/sparkgate-imds-guard.service >/dev/null <<'UNIT'
[Unit]
Description=sparkgate: keep kernel uids away from the instance metadata service
[Service]
Type=oneshot
ExecStart=/usr/local/libexec/sparkgate/imds-guard
UNIT
sudo tee /etc/systemd/system/sparkgate-imds-guard.timer >/dev/null <<'UNIT'
[Unit]
Description=sparkgate: re-assert the IMDS rules every minute
[Timer]
OnBootSec=10s
OnUnitActiveSec=60s
[Install]
WantedBy=timers.target
UNIT
sudo /usr/local/libexec/sparkgate/imds-guard
sudo systemctl daemon-reload
sudo systemctl enable --now sparkgate-imds-guard.timer

# -- 3. ptrace only of one's own descendants ----------------------------------------------------------
echo 'kernel.yama.ptrace_scope = 1' | sudo tee /etc/sysctl.d/90-sparkgate.conf >/dev/null
sudo sysctl -q -w kernel.yama.ptrace_scope=1 || echo "bootstrap.sh: warning: could not set kernel.yama.ptrace_scope" >&2

# -- 4. the supervisor credential broker (primary node) ------------------------------------------------
is_primary() {
    "$PY" -c 'import json,sys; sys.exit(0 if json.load(open("/mnt/var/lib/info/instance.json")).get("isMaster") else 1)'
}
if [[ -z "$SUPERVISOR_ROLE_ARN" ]]; then
    echo "bootstrap.sh: no --supervisor-role-arn: no credential broker, the supervisor has no table access" >&2
elif is_primary; then
    [[ -n "$BUNDLE" && -n "$REGION" ]] || { echo "bootstrap.sh: --bundle and --region are required" >&2; exit 2; }
    staging="$(sudo mktemp -d)"
    sudo aws s3 cp --only-show-errors --region "$REGION" "${BUNDLE%/}/credential_broker.py" "$staging/credential_broker.py"
    sudo install -o root -g root -m 0644 "$staging/credential_broker.py" /usr/local/libexec/sparkgate/credential_broker.py
    sudo rm -rf -- "$staging"
    sudo tee /etc/systemd/system/sparkgate-credential-broker.service >/dev/null <<UNIT
[Unit]
Description=sparkgate: the supervisor's credentials, for the step user only (SO_PEERCRED)
After=network-online.target
Wants=network-online.target
[Service]
ExecStart=$PY -I /usr/local/libexec/sparkgate/credential_broker.py serve --role-arn $SUPERVISOR_ROLE_ARN --allow-user $SUPERVISOR_USER --deny-uid-from $KERNEL_UID_MIN --region $REGION
Restart=always
RestartSec=5
RuntimeDirectory=sparkgate
RuntimeDirectoryMode=0755
[Install]
WantedBy=multi-user.target
UNIT
    sudo tee /etc/sparkgate/aws-config >/dev/null <<CONFIG
[profile $SUPERVISOR_PROFILE]
credential_process = $PY -I /usr/local/libexec/sparkgate/credential_broker.py fetch
region = $REGION
CONFIG
    sudo chmod 0644 /etc/sparkgate/aws-config
    sudo systemctl daemon-reload
    sudo systemctl enable --now sparkgate-credential-broker.service
fi
