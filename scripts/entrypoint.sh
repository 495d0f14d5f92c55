#!/bin/sh
# Container entrypoint: check that the nsjail sandbox can start here, then run the command
# (by default `python3 -m server`). A runtime that denies the namespaces nsjail needs makes the
# container exit at once with nsjail's reason and the fix, instead of after loading the models.
# RSTAR_SANDBOX=local (no isolation) or RSTAR_SANDBOX_CHECK=0 skips the check.
set -eu

if [ "${RSTAR_SANDBOX:-nsjail}" = "nsjail" ] && [ "${RSTAR_SANDBOX_CHECK:-1}" != "0" ]; then
  # one jailed worker runs one trivial step; exit status 2 = the sandbox itself cannot run
  if ! err=$(echo 'print(1)' | RSTAR_SANDBOX_WORKERS=1 timeout 120 python3 -m sandbox exec - 2>&1 >/dev/null); then
    cat >&2 <<EOF
rstar-server: the nsjail sandbox cannot start in this container.
$err

The server runs every step's code in nsjail, which must create namespaces here:
  Kubernetes: the container's securityContext needs runAsUser 0, capabilities
    SYS_ADMIN, NET_ADMIN, SETUID, SETGID, SETPCAP, KILL (and DAC_OVERRIDE), seccompProfile
    Unconfined and appArmorProfile Unconfined (the Helm chart's sandbox.securityContext
    default), or privileged: true.
  docker run: --user 0 --cap-add SYS_ADMIN --cap-add NET_ADMIN
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
To run step code WITHOUT isolation instead (unsafe), set RSTAR_SANDBOX=local.
EOF
    exit 78  # EX_CONFIG
  fi
fi

exec "$@"
