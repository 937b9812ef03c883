SUMMARY = "Everything an edgecount appliance runs"
DESCRIPTION = "The counter, its camera and USB tooling, and the watchdog configuration."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "multimedia"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "edgecount \
                  systemd-conf \
                  usbutils \
                  v4l-utils"
