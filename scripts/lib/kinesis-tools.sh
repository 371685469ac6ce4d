# Kinesis test tools, sourced by scripts/test:
#
#   source scripts/lib/kinesis-tools.sh
#   kinesis_tools_setup    # installs what is missing, then exports:
#
#   SLUICE_KINESIS_LOCAL_DIR  the installed npm package kinesis-local (a Kinesis
#                             API server, kinesis-mock compiled to JavaScript):
#                             its main script and server.json (TLS certificate)
#   SLUICE_NODE               the node binary that runs it (Node 18 or newer)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                             dummy keys for the AWS SDK's credential chain
#   AWS_EC2_METADATA_DISABLED true: never ask the EC2 metadata service
#
# Everything goes to ${SLUICE_KINESIS_TOOLS:-$HOME/.cache/sluice/kinesis},
# never into the repository. Idempotent: a complete install is recognised by
# its marker file and left alone. Needs node and npm.

kinesis_tools_dir="${SLUICE_KINESIS_TOOLS:-$HOME/.cache/sluice/kinesis}"
kinesis_tools_pkg="kinesis-local@0.6.2"

kinesis_tools_say() { printf 'kinesis-tools: %s\n' "$*" >&2; }

kinesis_tools_setup() {
    command -v node >/dev/null 2>&1 || { kinesis_tools_say "error: node not found (install Node.js 18+)"; return 1; }
    command -v npm >/dev/null 2>&1 || { kinesis_tools_say "error: npm not found"; return 1; }
    local pkg_dir="$kinesis_tools_dir/node_modules/kinesis-local"
    local marker="$kinesis_tools_dir/.installed"
    if ! [[ -f "$marker" && "$(cat "$marker")" == "$kinesis_tools_pkg" && -f "$pkg_dir/package.json" ]]; then
        kinesis_tools_say "installing $kinesis_tools_pkg from npm into $kinesis_tools_dir"
        mkdir -p "$kinesis_tools_dir"
        [[ -f "$kinesis_tools_dir/package.json" ]] \
            || printf '{"name":"sluice-kinesis-tools","private":true}\n' >"$kinesis_tools_dir/package.json"
        npm install --prefix "$kinesis_tools_dir" --no-audit --no-fund --loglevel=error \
            "$kinesis_tools_pkg" >&2 \
            || { kinesis_tools_say "error: npm install $kinesis_tools_pkg failed"; return 1; }
        [[ -f "$pkg_dir/package.json" ]] \
            || { kinesis_tools_say "error: npm installed no $pkg_dir"; return 1; }
        printf '%s' "$kinesis_tools_pkg" >"$marker"
    fi
    export SLUICE_KINESIS_LOCAL_DIR="$pkg_dir"
    export SLUICE_NODE
    SLUICE_NODE="$(command -v node)"
    # The kinesis receiver takes its credentials from the AWS SDK's standard
    # chain; the first link is these variables. The test server accepts any
    # key. Set for the whole test run so no test reaches for a real
    # account's keys or the EC2 metadata service.
    export AWS_ACCESS_KEY_ID=sluice-test AWS_SECRET_ACCESS_KEY=sluice-test
    export AWS_EC2_METADATA_DISABLED=true
}
