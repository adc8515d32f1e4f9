#!/bin/sh
# /app/entrypoint.sh — boot gate for a container: check, migrate, check, then exec the app.
#
#   ENTRYPOINT ["/app/entrypoint.sh"]
#   CMD ["/app/server", "--listen", ":8080"]
#
# Exit codes of invar: 0 held, 1 an invariant failed, 2 something could not be checked,
# 3 the config is invalid. Any of them stops the boot here, with the report in the log.
# Emergency override (the data is known good, the gate is wrong): INVAR_BOOT_GATE=off —
# logged loudly, and never the default.
set -eu

CONFIG=/app/invar.yaml
# The whole gate must end inside the platform's health grace (Fly: 60 s). `timeout` is the
# outer bound; the suite's `budget` and each check's `timeout` are the inner ones.
GATE_SECONDS=${INVAR_GATE_SECONDS:-45}

gate() {
    if [ "${INVAR_BOOT_GATE:-on}" = "off" ]; then
        echo "entrypoint: WARNING: INVAR_BOOT_GATE=off — boot gate '$1' NOT checked" >&2
        return 0
    fi
    echo "entrypoint: boot gate: $1" >&2
    set +e
    timeout "$GATE_SECONDS" invar run --config "$CONFIG" "$@" --format table
    code=$?
    set -e
    case $code in
        0) return 0 ;;
        124) echo "entrypoint: boot gate '$1' did not finish in ${GATE_SECONDS}s: refusing to start" >&2 ;;
        *) echo "entrypoint: boot gate '$1' exited $code: refusing to start" >&2 ;;
    esac
    exit "$code"
}

# 1. Before migrating: the manifest covers every required migration.
gate "manifest" --only BOOT-01

# 2. Migrate (your tool here; it applies only what the manifest lists).
/app/migrate --manifest /app/migrations/boot_manifest.txt

# 3. After migrating: the whole boot suite (BOOT-03 skips itself on a database over 5 GB).
gate "boot" --suite boot

exec "$@"
