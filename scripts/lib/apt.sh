# Shared by the set-up scripts: make sure Debian packages are installed.
# As root, installs what is missing with apt-get; otherwise prints the apt-get line to run and fails.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    # NVRTC (libnvrtc*) lives in Debian's non-free component.
    if printf '%s\n' "${missing[@]}" | grep -q '^libnvrtc'; then enable_nonfree; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "Missing Debian packages. Run as root (libnvrtc* needs the non-free component in apt's sources):" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

ensure_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "The .NET SDK (10.0) is required: https://learn.microsoft.com/dotnet/core/install/linux-debian" >&2
    return 1
  fi
}

# Adds the contrib and non-free components to apt's Debian sources (deb822 or one-line format).
enable_nonfree() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed -i -E '/^Components:/{/non-free( |$)/!s/$/ contrib non-free/}' "$f"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -i -E '/^deb .*debian/{/non-free( |$)/!s/$/ contrib non-free/}' /etc/apt/sources.list
  fi
}
