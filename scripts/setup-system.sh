#!/usr/bin/env bash
# Installs the Debian packages vipd's tests, lab and benchmarks need, if missing.
# (systemd-container and debootstrap: test/deploy/systemd.test.ts boots a
# Debian tree with systemd as PID 1 under systemd-nspawn; strace: the kernel
# tests and bench:scale count the netlink datagrams vipd sends.)
# Idempotent; needs root (the tests need root anyway: they create namespaces).
set -euo pipefail
need=()
for pair in ip:iproute2 curl:curl etcd:etcd-server nft:nftables ping:iputils-ping openssl:openssl \
            keepalived:keepalived ucarp:ucarp tcpdump:tcpdump arping:iputils-arping strace:strace \
            systemd-analyze:systemd cloud-init:cloud-init setpriv:util-linux \
            systemd-nspawn:systemd-container debootstrap:debootstrap; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "vipd: missing packages (${need[*]}); run as root so they can be installed" >&2
    exit 1
  fi
  echo "vipd: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The Debian packages start services on install where PID 1 is systemd; the
  # tests start their own etcd and keepalived, so stop any that came up.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  for svc in etcd keepalived ucarp; do
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
  # cloud-init is here for its schema check (test/deploy/); it must not
  # configure this machine at its next boot.
  case " ${need[*]} " in
    *" cloud-init "*) touch /etc/cloud/cloud-init.disabled ;;
  esac
fi
