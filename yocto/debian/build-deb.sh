#!/usr/bin/env bash
# Build edgecount_<version>_<arch>.deb for Debian/Mendel (Python 3.11).
#
# The Python dependencies are bundled under /opt/edgecount/lib (Debian bookworm's
# python3-pydantic is 1.x and there is no TFLite package), installed from wheels
# for the target's Python; the package runs on Debian's own /usr/bin/python3.
# On these build machines a pyenv Python shadows Debian's: Debian's tools come
# first on PATH here.
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
root_dir="$(cd "$(dirname "$0")/../.." && pwd)"
out_dir="${1:-$root_dir/build}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root_dir/pyproject.toml" | head -1)"
# The package's architecture: this machine's, or EDGECOUNT_DEB_ARCH (arm64 for a Coral Dev Board or a Raspberry
# Pi, built on any host: nothing is compiled, the wheels are chosen for the target).
arch="${EDGECOUNT_DEB_ARCH:-$(dpkg --print-architecture)}"
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "build-deb: no wheels for architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
esac
pkg="$out_dir/edgecount_${version}_${arch}"
pip_python="${PIP_PYTHON:-python3}"   # any Python with pip; wheels are chosen for the target below

rm -rf "$pkg" && mkdir -p "$pkg/DEBIAN" "$pkg/opt/edgecount/lib" "$pkg/usr/bin" \
    "$pkg/lib/systemd/system" "$pkg/lib/systemd/system.conf.d" "$pkg/usr/lib/sysusers.d" \
    "$pkg/lib/udev/rules.d" "$pkg/etc/edgecount" "$pkg/usr/share/edgecount" "$pkg/usr/share/doc/edgecount"

"$pip_python" -m pip wheel --quiet --no-deps --wheel-dir "$out_dir/wheels" "$root_dir"
"$pip_python" -m pip install --quiet --target "$pkg/opt/edgecount/lib" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" \
    --platform "manylinux_2_28_$machine" --platform "manylinux_2_34_$machine" \
    "$out_dir"/wheels/edgecount-"$version"-*.whl
# The wheel's data files (the model manifest) belong under /usr/share, where the code finds them
# for Debian's /usr/bin/python3 (sys.prefix /usr); pip --target puts them beside the libraries instead.
mv "$pkg/opt/edgecount/lib/share/edgecount/manifest.toml" "$pkg/usr/share/edgecount/manifest.toml"
mv "$pkg/opt/edgecount/lib/share/edgecount/recipes" "$pkg/usr/share/edgecount/recipes"
rm -rf "$pkg/opt/edgecount/lib/share"

cat > "$pkg/usr/bin/edgecount" <<'SH'
#!/bin/sh
# Debian's Python with edgecount's bundled libraries; the services inherit PYTHONPATH.
PYTHONPATH=/opt/edgecount/lib${PYTHONPATH:+:$PYTHONPATH} exec /usr/bin/python3 -m edgecount "$@"
SH
chmod 0755 "$pkg/usr/bin/edgecount"

install -m 0644 "$root_dir/yocto/systemd/edgecount.service" "$pkg/lib/systemd/system/"
install -m 0644 "$root_dir/yocto/systemd/10-edgecount-watchdog.conf" "$pkg/lib/systemd/system.conf.d/"
install -m 0644 "$root_dir/yocto/systemd/edgecount.sysusers" "$pkg/usr/lib/sysusers.d/edgecount.conf"
install -m 0644 "$root_dir/yocto/udev/99-edgecount-coral.rules" "$pkg/lib/udev/rules.d/"
install -m 0644 "$root_dir/config/edgecount.toml" "$pkg/etc/edgecount/edgecount.toml"
install -m 0644 "$root_dir/README.md" "$root_dir/LICENSE" "$pkg/usr/share/doc/edgecount/"

installed_kb="$(du -sk "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CTL
Package: edgecount
Version: $version
Architecture: $arch
Maintainer: edgecount developers <edgecount@localhost>
Installed-Size: $installed_kb
Depends: python3 (>= 3.11), python3 (<< 3.12), adduser, systemd, libgl1 | libgl1-mesa-glx, libglib2.0-0
Recommends: libedgetpu1-std
Section: video
Priority: optional
Homepage: https://github.com/edgecount/edgecount
Description: people counting on the edge, only counts leave the device
 Detects, tracks and counts people crossing lines and occupying zones on an edge
 device (Coral Edge TPU or CPU), and sends only aggregated counts upstream.
CTL
echo "/etc/edgecount/edgecount.toml" > "$pkg/DEBIAN/conffiles"
install -m 0755 "$root_dir/yocto/debian/postinst" "$root_dir/yocto/debian/prerm" "$root_dir/yocto/debian/postrm" \
    "$pkg/DEBIAN/"
dpkg-deb --root-owner-group --build "$pkg" "$out_dir/" >/dev/null
echo "$out_dir/edgecount_${version}_${arch}.deb"
