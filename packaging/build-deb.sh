#!/usr/bin/env bash
# Build the appliance's Debian package: packaging/build-deb.sh [OUTDIR] [--with-deps]
#
# The .deb carries the daemon as a wheel, the systemd unit, the default config (a
# conffile) and maintainer scripts. At install, postinst creates the system user and a
# virtual environment in /opt/appliance/venv and pip-installs the wheel there:
#   - default: dependencies come from the box's package index (PyPI, or the mirror set in
#     /etc/pip.conf), since onnxruntime-gpu and its CUDA libraries are far too large and
#     too machine-specific to bundle by default;
#   - --with-deps: every dependency wheel for this build machine's Python and platform
#     is bundled too, and postinst installs with --no-index: an air-gapped box needs
#     nothing but the .deb (build it on the same Debian release as the box).
# Needs python3 (with pip and setuptools) and dpkg-deb.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
outdir="."
with_deps=0
for arg in "$@"; do
    case "$arg" in
        --with-deps) with_deps=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "build-deb.sh: unknown option $arg (expected --with-deps)" >&2; exit 2 ;;
        *) outdir="$arg" ;;
    esac
done
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
python="${PYTHON:-python3}"

version="$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Build from a copy: setuptools writes build/ and *.egg-info next to its sources.
src="$work/src"
mkdir -p "$src"
for item in pyproject.toml README.md LICENSE appliance compress federated; do
    [ -e "$repo/$item" ] && cp -r "$repo/$item" "$src/"
done
[ -e "$src/README.md" ] || echo "# appliance" > "$src/README.md"
find "$src" -name __pycache__ -prune -exec rm -rf {} +

root="$work/root"
wheels="$root/opt/appliance/wheels"
mkdir -p "$wheels"
isolation="--no-build-isolation"
"$python" -c 'import setuptools' 2>/dev/null || isolation=""
"$python" -m pip wheel --quiet --no-deps $isolation --wheel-dir "$wheels" "$src"
if [ "$with_deps" = 1 ]; then
    "$python" -m pip wheel --quiet --wheel-dir "$wheels" "$wheels"/appliance-*.whl
    touch "$wheels/.complete"   # postinst: install with --no-index
fi

install -D -m 0644 "$here/systemd/appliance.service" "$root/lib/systemd/system/appliance.service"
install -D -m 0640 "$here/appliance.toml" "$root/etc/appliance/appliance.toml"
install -D -m 0644 "$src/README.md" "$root/usr/share/doc/appliance/README.md"
install -D -m 0644 "$here/debian/copyright" "$root/usr/share/doc/appliance/copyright"

mkdir -p "$root/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
size_kb="$(du -sk "$root" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size_kb/" "$here/debian/control.in" \
    > "$root/DEBIAN/control"

deb="$outdir/appliance_${version}_all.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
