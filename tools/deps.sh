# deps.sh — sourced by tools/demo.sh and tools/test.sh: installs the Debian 12 packages onyx
# needs, with apt-get, and only those that are missing.
onyx_packages="cmake make gcc pkg-config libprotobuf-c-dev protobuf-c-compiler libzip-dev libonnx-testdata"

onyx_install_deps() {
    local missing=()
    for p in $onyx_packages "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
