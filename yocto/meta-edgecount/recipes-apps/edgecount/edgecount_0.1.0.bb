SUMMARY = "People counting on the edge: only counts leave the device"
DESCRIPTION = "Detects, tracks and counts people crossing lines and occupying zones \
               with TensorFlow Lite on the CPU or a Coral Edge TPU, and sends only aggregated counts upstream."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"
CVE_PRODUCT = "edgecount"

DEPENDS += "python3-setuptools-native python3-wheel-native"
EDGECOUNT_EDGETPU_RUNTIME ??= "libedgetpu-std"

# The layer lives inside the edgecount repository and builds the application from that
# checkout (externalsrc), so the recipe has no download of its own.
SRC_URI = ""

inherit externalsrc python_setuptools_build_meta systemd useradd

# The checkout holding this layer (yocto/meta-edgecount/recipes-apps/edgecount/ -> four levels up), as the
# absolute path externalsrc requires.
EXTERNALSRC = "${@os.path.abspath(os.path.join(d.getVar('FILE_DIRNAME'), '../../../..'))}"
EXTERNALSRC_BUILD = "${WORKDIR}/build"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/yocto/systemd/edgecount.service ${D}${systemd_system_unitdir}/edgecount.service
    install -d ${D}${sysconfdir}/edgecount
    install -m 0644 ${S}/config/edgecount.toml ${D}${sysconfdir}/edgecount/edgecount.toml
    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${S}/yocto/udev/99-edgecount-coral.rules ${D}${nonarch_base_libdir}/udev/rules.d/99-edgecount-coral.rules
}

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/edgecount --no-create-home --shell ${base_sbindir}/nologin --groups video,plugdev edgecount"

SYSTEMD_SERVICE:${PN} = "edgecount.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# ${datadir}/edgecount/manifest.toml comes from the wheel's data files (pyproject.toml) and is read there
# at run time; ${datadir}/${BPN} is packaged by default.
FILES:${PN} += "${nonarch_base_libdir}/udev/rules.d \
                ${sysconfdir}/edgecount \
                ${systemd_system_unitdir}/edgecount.service"
CONFFILES:${PN} = "${sysconfdir}/edgecount/edgecount.toml"

# What the services import on the device (pyproject.toml's dependencies); evaluation (trackeval, SciPy)
# is never imported by them and not installed.
RDEPENDS:${PN} = "${EDGECOUNT_EDGETPU_RUNTIME} \
                  opencv \
                  python3-attrs \
                  python3-core \
                  python3-msgpack \
                  python3-numpy \
                  python3-opencv \
                  python3-paho-mqtt \
                  python3-plotext \
                  python3-pydantic \
                  python3-pyzmq \
                  python3-rich \
                  python3-sqlite3 \
                  python3-structlog \
                  python3-tensorflow-lite \
                  python3-tomlkit"

BBCLASSEXTEND = ""
