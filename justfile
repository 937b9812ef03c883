# edgecount tasks. `just demo` and `just test` are the README's quick start.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
# Where models and the PETS09 clip are mirrored; without it they are downloaded.
export EDGECOUNT_ASSET_MIRROR := env_var_or_default("EDGECOUNT_ASSET_MIRROR", if path_exists("../shared/assets") == "true" { "../shared/assets" } else { "" })
# The scarthgap layer snapshots the BitBake test parses offline.
export EDGECOUNT_YOCTO_LAYERS := env_var_or_default("EDGECOUNT_YOCTO_LAYERS", if path_exists("../shared/yocto-layers") == "true" { "../shared/yocto-layers" } else { "" })
# Models and clips go to the user's cache (~/.cache/edgecount), where `edgecount run` with the user's own
# configuration finds them after the demo (the tests keep theirs in ./.cache: tests/conftest.py).

# list the recipes
default:
    @just --list

# create the virtual environment and install edgecount with its dev tools
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        python3 -m venv {{venv}}
        {{venv}}/bin/pip install --quiet --upgrade pip
        {{venv}}/bin/pip install --quiet -e '.[dev]'
        rm -f {{venv}}/.installed-*; touch "$stamp"
    fi

# the virtual environment with edgecount alone: what the demo needs (the dev tools' trackeval pulls in
# OpenCV's GUI build, which a headless Debian cannot load without libxcb)
setup-runtime:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{venv}}/bin/edgecount ] || [ pyproject.toml -nt {{venv}}/bin/edgecount ]; then
        python3 -m venv {{venv}}
        {{venv}}/bin/pip install --quiet --upgrade pip
        {{venv}}/bin/pip install --quiet -e .
        touch {{venv}}/bin/edgecount
    fi

# the built-in demo: the whole multi-process pipeline over the PETS09 clip, printing counts per line
demo: setup-runtime
    {{venv}}/bin/edgecount models fetch yolox_nano pets09
    {{venv}}/bin/edgecount replay asset:pets09 --config config/demo.toml

# install what the tests run against when missing: Mosquitto, debootstrap, QEMU, RTSP, BitBake's tools, RAUC
test-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
    [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    [ -x /usr/sbin/mke2fs ] || need+=(e2fsprogs)
    command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg-dev)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
    [ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
    # trackeval (evaluation) depends on OpenCV's GUI build, which loads libxcb even without a display
    /sbin/ldconfig -p 2>/dev/null | grep 'libxcb.so.1 ' >/dev/null || need+=(libxcb1)  # no -q: with pipefail, an early exit breaks the pipe
    # BitBake's host tools (the image's dependency graph is resolved by a real BitBake)
    for t in gawk chrpath diffstat cpio lz4 zstd file; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
    locale -a 2>/dev/null | grep -qi '^en_US.utf8$' || need+=(locales)
    # A/B images and signed updates: RAUC, GRUB's EFI build, the EFI partition, UEFI firmware for QEMU
    command -v rauc >/dev/null 2>&1 || need+=(rauc)
    command -v mksquashfs >/dev/null 2>&1 || need+=(squashfs-tools)
    [ -x /usr/sbin/veritysetup ] || need+=(cryptsetup-bin)
    [ -d /usr/lib/grub/x86_64-efi ] || need+=(grub-efi-amd64-bin)
    command -v grub-mkstandalone >/dev/null 2>&1 || need+=(grub-common)
    [ -x /usr/sbin/mkfs.vfat ] || need+=(dosfstools)
    command -v mcopy >/dev/null 2>&1 || need+=(mtools)
    [ -x /usr/sbin/sfdisk ] || need+=(fdisk)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
    command -v faketime >/dev/null 2>&1 || need+=(faketime)
    # arm64: the arm64 package's programs run here under qemu-user, through binfmt_misc
    [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
    # the Raspberry Pi's A/B boot script, run by Debian's U-Boot for QEMU's arm64 virt machine
    command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-system-arm)
    command -v mkimage >/dev/null 2>&1 || need+=(u-boot-tools)
    [ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || need+=(u-boot-qemu)
    # a real RTSP camera: GStreamer's RTSP server, driven by Debian's own Python
    /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null \
        || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-base)
    if [ "${#need[@]}" -gt 0 ]; then
        echo "installing test dependencies: ${need[*]}" >&2
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    # Containers often start without binfmt_misc mounted, and then nothing registered qemu-aarch64 at install time.
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -x /usr/bin/qemu-aarch64-static ]; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        [ -e /proc/sys/fs/binfmt_misc/status ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
        $SUDO update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
        $SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if ! locale -a 2>/dev/null | grep -qi '^en_US.utf8$'; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "en_US.UTF-8 UTF-8" | $SUDO tee -a /etc/locale.gen >/dev/null
        $SUDO locale-gen >/dev/null
    fi

# lint and type-check (libs strictly, services too)
lint: setup
    {{venv}}/bin/ruff check libs services tests
    {{venv}}/bin/mypy -p edgecount_core
    {{venv}}/bin/mypy --strict services/edgecount

# lint, type-check and run every test (installs the test dependencies first; names the 12 slowest, for CI's budget)
test: setup test-deps lint
    {{venv}}/bin/python -m pytest -q --durations=12

# the inner loop: lint and every test but the multi-process, broker and image ones (about 2 minutes)
test-fast: setup lint
    {{venv}}/bin/python -m pytest -q -m "not slow"

# benchmarks: print numbers, assert nothing
bench: setup
    {{venv}}/bin/pip install --quiet -e '.[dev,peers]'
    {{py}} tests/bench/bench_runtime.py
    {{py}} tests/bench/bench_tracking.py
    {{py}} tests/bench/bench_sweep.py
    {{py}} tests/bench/bench_footprint.py
    {{py}} tests/bench/bench_cameras.py

# build the Debian (Mendel) package into build/
deb:
    bash yocto/debian/build-deb.sh build

# the package for arm64 devices (Coral Dev Board on Mendel, Raspberry Pi), built on any host from aarch64 wheels
deb-arm64:
    EDGECOUNT_DEB_ARCH=arm64 bash yocto/debian/build-deb.sh build

# the flashable A/B disk image (EFI+GRUB, slots A/B, data) into build/, as root; trusts build/keys (dev keys)
image: deb test-deps
    bash yocto/image/dev-keys.sh build/keys
    /usr/bin/python3 yocto/image/build_image.py build/edgecount-amd64.img --deb "$(ls -t build/edgecount_*.deb | head -1)" --keyring build/keys/ca.cert.pem

# a signed RAUC bundle (verity) of this tree's root file system, for `edgecount update` on an image's device
bundle: deb test-deps
    bash yocto/image/dev-keys.sh build/keys
    /usr/bin/python3 yocto/image/build_image.py build/rootfs.ext4 --rootfs-only --deb "$(ls -t build/edgecount_*.deb | head -1)" --keyring build/keys/ca.cert.pem
    /usr/bin/python3 yocto/image/bundle.py build/rootfs.ext4 "build/edgecount-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1).raucb" --version "$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)" --cert build/keys/ca.cert.pem --key build/keys/ca.key.pem --keyring build/keys/ca.cert.pem
