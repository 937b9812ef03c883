SUMMARY = "Structured logging for Python"
DESCRIPTION = "structlog makes logging in Python structured: key-value events, JSON in production, \
               readable on a terminal. edgecount logs with it; the layers of scarthgap do not carry it."
HOMEPAGE = "https://www.structlog.org/"
BUGTRACKER = "https://github.com/hynek/structlog/issues"
SECTION = "devel/python"
LICENSE = "MIT | Apache-2.0"
CVE_PRODUCT = "structlog"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=0473cdcf9c6ed3f81c08d886870daea5 \
                    file://LICENSE-APACHE;md5=2ee41112a44fe7014dce33e26468ba93"

SRC_URI[sha256sum] = "b27bfecede327a6d2da5fbc96bd859f114ecc398a6389d664f62085ee7ae6fc4"

inherit pypi python_hatchling

DEPENDS += "python3-hatch-fancy-pypi-readme-native python3-hatch-vcs-native"

RDEPENDS:${PN} += "python3-json python3-logging"

BBCLASSEXTEND = "native nativesdk"
