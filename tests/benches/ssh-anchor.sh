#!/usr/bin/env bash
# The ssh anchor for the benchmarks: what gomote is compared against.
#
# Starts a private sshd on 127.0.0.1 (port 2222, or $GOMOTE_ANCHOR_PORT)
# that uses its own host key, its own config and its own authorized_keys,
# all under /tmp/gomote-anchor, and writes /tmp/gomote-anchor/rsh: an ssh
# wrapper that multiplexes over one ControlMaster connection, usable as
#   /tmp/gomote-anchor/rsh root@127.0.0.1 true
#   rsync -a --delete -e /tmp/gomote-anchor/rsh SRC/ root@127.0.0.1:DST/
# Nothing outside that folder is changed (no ~/.ssh/authorized_keys, no
# /etc/ssh host keys) except /run/sshd, which sshd needs, and packages
# installed with apt when ssh, sshd or rsync are missing.
#
# Idempotent: a second run finds the sshd it started and reuses it.
# Exits non-zero, saying why on stderr, when the anchor cannot be made.
set -euo pipefail
umask 077

A=/tmp/gomote-anchor
PORT=${GOMOTE_ANCHOR_PORT:-2222}
USER_NAME=$(id -un)
DEADLINE_S=${GOMOTE_ANCHOR_TIMEOUT:-15}

die() { echo "ssh-anchor: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Waits until "$@" succeeds, for at most DEADLINE_S seconds.
wait_until() {
  local end=$((SECONDS + DEADLINE_S))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# Packages, only when something is missing.
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}; installing them needs root"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
fi

# A private folder: keys, config, control sockets.
mkdir -p "$A"
[ ! -L "$A" ] && [ -O "$A" ] || die "$A is a link or belongs to someone else"
chmod 700 "$A"

[ -f "$A/id" ] || ssh-keygen -q -t ed25519 -N '' -C gomote-anchor -f "$A/id"
[ -f "$A/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gomote-anchor-host -f "$A/host_ed25519"
chmod 600 "$A/id" "$A/host_ed25519"
cp "$A/id.pub" "$A/authorized_keys"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$A/host_ed25519.pub")" >"$A/known_hosts"
chmod 600 "$A/authorized_keys" "$A/known_hosts"

# SHLVL=1: bash, when sshd starts it for a command, reads ~/.bashrc if it
# is a top-level shell; a user's rc file (root's may run pyenv init, some
# 300 ms) is not ssh's cost and must not be in the anchor, so the shell
# sshd starts counts as a nested one and reads none.
#
# The authorized_keys file lives in /tmp, which is world-writable, so
# StrictModes (which checks every folder on the way) must be off; the
# folder itself is 0700 and the file 0600.
cat >"$A/sshd_config.new" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $A/host_ed25519
PidFile $A/sshd.pid
AuthorizedKeysFile $A/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $USER_NAME
UsePAM yes
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
MaxStartups 100:30:200
MaxSessions 100
SetEnv SHLVL=1
EOF
changed=1
if cmp -s "$A/sshd_config.new" "$A/sshd_config"; then changed=0; fi
mv -f "$A/sshd_config.new" "$A/sshd_config"

# The sshd named in the pid file, if alive and started for this folder
# (by this script, or by an earlier anchor script with other settings).
anchor_sshd() {
  local pid
  pid=$(cat "$A/sshd.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$A/" &&
    echo "$pid"
}

# Ends the master connection, whose sshd keeps the settings it started with.
end_master() {
  if [ -x "$A/rsh" ]; then "$A/rsh" -O exit "$USER_NAME@127.0.0.1" >/dev/null 2>&1 || true; fi
}

if pid=$(anchor_sshd) && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$A/sshd_config"; then
  # Ours: reuse it; reload only when this script now writes another config.
  if [ "$changed" = 1 ]; then
    /usr/sbin/sshd -t -f "$A/sshd_config" || die "sshd rejects $A/sshd_config"
    kill -HUP "$pid"
    end_master
  fi
else
  if pid=$(anchor_sshd); then
    # An earlier anchor's sshd with other settings: replace it.
    kill "$pid"
    end_master
    wait_until eval '! port_open' || die "the earlier anchor sshd (pid $pid) did not stop"
  fi
  port_open && die "127.0.0.1:$PORT is taken by something other than this anchor's sshd (set GOMOTE_ANCHOR_PORT)"
  rm -f "$A/sshd.pid"
  mkdir -p /run/sshd 2>/dev/null && chmod 755 /run/sshd 2>/dev/null || true
  /usr/sbin/sshd -t -f "$A/sshd_config" || die "sshd rejects $A/sshd_config"
  /usr/sbin/sshd -f "$A/sshd_config" -E "$A/sshd.log" || die "sshd did not start (see $A/sshd.log)"
fi
wait_until port_open || die "sshd not listening on 127.0.0.1:$PORT after ${DEADLINE_S}s (see $A/sshd.log)"

# The wrapper; written whole then moved, so a concurrent reader never sees
# half of it.
cat >"$A/rsh.new" <<EOF
#!/bin/sh
exec ssh -i $A/id -p $PORT -F /dev/null \\
  -o BatchMode=yes -o IdentitiesOnly=yes \\
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$A/known_hosts \\
  -o ControlMaster=auto -o ControlPath=$A/cm-%r@%h:%p -o ControlPersist=600 \\
  "\$@"
EOF
chmod 700 "$A/rsh.new"
mv -f "$A/rsh.new" "$A/rsh"

# Proves the whole path (auth, host key, master connection) and leaves
# the master up for the benchmarks.
check() { timeout 10 "$A/rsh" "$USER_NAME@127.0.0.1" true </dev/null; }
wait_until check || die "ssh to $USER_NAME@127.0.0.1:$PORT failed (see $A/sshd.log)"

echo "anchor ready: $A/rsh ($USER_NAME@127.0.0.1:$PORT, sshd pid $(cat "$A/sshd.pid"))"
