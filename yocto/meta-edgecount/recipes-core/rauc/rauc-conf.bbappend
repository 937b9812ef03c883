# The appliance's RAUC configuration: the Debian image's system.conf (yocto/image/ of the checkout), and as the
# keyring the CA certificate in the build's keys directory (EDGECOUNT_KEYS_DIR; `just image` makes development
# keys there). Production builds put their own CA's certificate there: the signing key never goes on a device.
FILESEXTRAPATHS:prepend:edgecount-os := "${EDGECOUNT_KEYS_DIR}:${THISDIR}/../../../image:"
RAUC_KEYRING_FILE:edgecount-os = "ca.cert.pem"

do_install:prepend:edgecount-os() {
    if ! grep -q "BEGIN CERTIFICATE" ${WORKDIR}/ca.cert.pem; then
        bbfatal "no update CA: put the certificate bundles must chain to in ${EDGECOUNT_KEYS_DIR}/ca.cert.pem"
    fi
}

do_install:append:edgecount-os() {
    conf=${D}${sysconfdir}/rauc/system.conf
    sed -i -e 's|@COMPATIBLE@|${EDGECOUNT_RAUC_COMPATIBLE}|' "$conf"
    if [ "${EDGECOUNT_BOOTLOADER}" = "uboot" ]; then
        sed -i -e 's|^bootloader=grub$|bootloader=uboot|' -e '/^grubenv=/d' "$conf"
    fi
    mv ${D}${sysconfdir}/rauc/ca.cert.pem ${D}${sysconfdir}/rauc/keyring.pem
}
