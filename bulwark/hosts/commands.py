"""Shell commands that both harden (as pyinfra facts) and verify (in its snapshot) run, so the
two read a host the same way. Plain strings: importing this loads nothing."""

from __future__ import annotations

# AIDE's database, the transient unit in which harden builds the first one, the daily check.
AIDE_DB = "/var/lib/aide/aide.db"
AIDE_INIT_UNIT = "bulwark-aide-init"
AIDE_CHECK_TIMER = "bulwark-aide-check.timer"

COMPILERS = ("as", "cc", "gcc", "g++", "clang")
# Each compiler on root's PATH, as its real file (the alternatives' target) and that file's mode.
COMPILER_MODES = (
    f'for c in {" ".join(COMPILERS)}; do p=$(command -v "$c") && '
    'stat -c "%a %n" "$(readlink -f "$p")"; done; true'
)

# Programs that need no setuid/setgid bit on a server (dev-sec linux-baseline os-06): harden
# drops the bits of those present, verify checks them.
SUID_DENYLIST = frozenset(
    {
        "/usr/bin/rcp", "/usr/bin/rlogin", "/usr/bin/rsh", "/usr/libexec/openssh/ssh-keysign",
        "/usr/lib/openssh/ssh-keysign", "/sbin/netreport", "/usr/sbin/usernetctl",
        "/usr/sbin/userisdnctl", "/usr/sbin/pppd", "/usr/bin/lockfile", "/usr/bin/mail-lock",
        "/usr/bin/mail-unlock", "/usr/bin/mail-touchlock", "/usr/bin/dotlockfile",
        "/usr/bin/arping", "/usr/sbin/arping", "/usr/sbin/uuidd", "/usr/bin/mtr",
        "/usr/lib/pt_chown", "/usr/lib/eject/dmcrypt-get-device", "/usr/lib/mc/cons.saver",
        "/usr/lib/evolution/camel-lock-helper-1.2",
    }
)  # fmt: skip

# /proc's hidepid exemption: the group whose members see every process, and the services that
# must be among them (they read other users' processes without CAP_SYS_PTRACE: logind, root but
# without it in its capability set, for the sessions it tracks; polkit, its own user, for the
# process asking it).
PROC_GROUP = "proc"
PROC_VIEWERS = ("systemd-logind.service", "polkit.service")
# "<unit> <gid>..." for each of PROC_VIEWERS that is running: the supplementary groups its main
# process holds now (a service started before its drop-in and the group existed lacks it).
PROC_VIEWER_GROUPS = (
    f"for u in {' '.join(PROC_VIEWERS)}; do "
    'p=$(systemctl show -p MainPID --value "$u" 2>/dev/null); '
    '[ "${p:-0}" = 0 ] || echo "$u $(awk \'$1 == "Groups:" { $1 = ""; print }\' '
    '"/proc/$p/status" 2>/dev/null)"; done; true'
)
