# SPDX-License-Identifier: MIT
# common.sh: sourced by the guest test scripts (bash). Messages prefixed with
# the script's name, timing, --help from the script's header comment, the
# checks every guest run starts with, and the work directory's fate.
# The functions use the caller's HERE, CACHE, PREPARE, PROGRAM, COUNT, KEEP,
# WORK and ok variables where they say so.

ME=$(basename "$0")
die() { echo "$ME: error: $*" >&2; exit 1; }
say() { echo "$ME: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

# Prints the script's header comment: line 2 up to `set -euo pipefail`.
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# Handles one of the options the guest test scripts share, at the start of
# "$@": --program PATH, --cache DIR, --count N, --timeout SECS, --keep,
# --no-prepare, -h/--help (setting PROGRAM, CACHE, COUNT, TIMEOUT, KEEP,
# PREPARE). Sets NOPT to the number of words it took, 0 when $1 is none of
# them. A script's loop:
#   while (($#)); do
#       common_opt "$@"; ((NOPT)) && { shift "$NOPT"; continue; }
#       case $1 in --own-option) ... ;; *) die "unknown option '$1' (see --help)" ;; esac
#   done
# shellcheck disable=SC2034 # the variables are the calling script's
common_opt() {
    NOPT=2
    case $1 in
    --program) PROGRAM=${2:?--program needs a value} ;;
    --cache) CACHE=${2:?--cache needs a value} ;;
    --count) COUNT=${2:?--count needs a value} ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value} ;;
    --keep) KEEP=1 NOPT=1 ;;
    --no-prepare) PREPARE=0 NOPT=1 ;;
    -h | --help) usage; exit 0 ;;
    *) NOPT=0 ;;
    esac
}

# Checks the --program and --count options (PROGRAM, COUNT).
check_program_opts() {
    [[ -n $PROGRAM ]] || die "--program PATH is required"
    [[ -x $PROGRAM ]] || die "$PROGRAM is not an executable"
    [[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "--count must be a positive number"
}

# Makes sure CACHE holds a guest kernel, running prepare.sh first unless
# PREPARE is 0, and that QEMU is installed. Exits 77 (skipped) otherwise.
guest_cache_ready() {
    if ((PREPARE)); then
        if ! "$HERE/prepare.sh" "$CACHE"; then
            [[ -s $CACHE/vmlinuz ]] || { say "SKIP: no guest kernel and prepare.sh failed"; exit 77; }
            say "prepare.sh failed; using the existing cache"
        fi
    fi
    [[ -s $CACHE/vmlinuz && -s $CACHE/modules/order ]] ||
        { say "SKIP: $CACHE has no guest kernel (run prepare.sh)"; exit 77; }
    command -v qemu-system-x86_64 >/dev/null || { say "SKIP: qemu-system-x86_64 not installed"; exit 77; }
}

# At exit: keeps WORK when asked to (KEEP) or when the run failed (ok=0).
drop_work() {
    if ((KEEP)) || ((!ok)); then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
