# Arm the hardware watchdog (RuntimeWatchdogSec, RebootWatchdogSec) in the edgecount-os distro.
# The drop-in is shared with the Debian package and lives in yocto/systemd/ of the repository.
FILESEXTRAPATHS:prepend:edgecount-os := "${THISDIR}/../../../systemd:"
SRC_URI:append:edgecount-os = " file://10-edgecount-watchdog.conf"

do_install:append:edgecount-os() {
    install -d ${D}${systemd_unitdir}/system.conf.d
    install -m 0644 ${WORKDIR}/10-edgecount-watchdog.conf ${D}${systemd_unitdir}/system.conf.d/10-edgecount-watchdog.conf
}

FILES:${PN}:append:edgecount-os = " ${systemd_unitdir}/system.conf.d/10-edgecount-watchdog.conf"
