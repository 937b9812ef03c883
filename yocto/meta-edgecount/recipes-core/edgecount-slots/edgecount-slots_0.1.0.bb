SUMMARY = "edgecount A/B slots: boot state, data partition mounts, update trial"
DESCRIPTION = "What makes the edgecount image one half of an A/B pair: GRUB's slot chooser and its \
               environment for the EFI partition, the data partition's mounts and the unit that keeps a new \
               slot once the appliance is healthy."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"
CVE_PRODUCT = "edgecount"

# grub-editenv makes the EFI partition's environment file (which slot to try, and how often it was tried).
DEPENDS += "grub-native"

# The Debian image's own files, from the checkout that holds this layer (yocto/image/): one GRUB script, one
# fstab, one trial unit.
SRC_URI = ""

inherit allarch deploy externalsrc systemd

EXTERNALSRC = "${@os.path.abspath(os.path.join(d.getVar('FILE_DIRNAME'), '../../../..'))}"
EXTERNALSRC_BUILD = "${WORKDIR}/build"

# Where a slot keeps its kernel, and the command line (Yocto's images boot without an initramfs).
EDGECOUNT_KERNEL_PATH ?= "/boot/${KERNEL_IMAGETYPE}"
EDGECOUNT_KERNEL_CMDLINE ?= "console=ttyS0,115200 panic=-1"

do_configure[noexec] = "1"

do_compile() {
    sed -e 's|@PARTUUID_A@|${EDGECOUNT_PARTUUID_A}|' -e 's|@PARTUUID_B@|${EDGECOUNT_PARTUUID_B}|' \
        -e 's|@KERNEL@|${EDGECOUNT_KERNEL_PATH}|' -e 's|@INITRD@||' -e 's|@CMDLINE@|${EDGECOUNT_KERNEL_CMDLINE}|' \
        ${S}/yocto/image/grub.cfg > ${B}/edgecount-grub.cfg
    rm -f ${B}/edgecount-grubenv
    grub-editenv ${B}/edgecount-grubenv create
    grub-editenv ${B}/edgecount-grubenv set "ORDER=A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
}

do_install() {
    install -d ${D}${systemd_system_unitdir} ${D}/data ${D}/boot/efi
    install -m 0644 ${S}/yocto/image/edgecount-update-trial.service ${D}${systemd_system_unitdir}/
    if [ "${EDGECOUNT_BOOTLOADER}" = "uboot" ]; then
        # RAUC's U-Boot backend edits uboot.env on the boot partition (mounted at /boot/efi by fstab).
        install -d ${D}${sysconfdir}
        echo "/boot/efi/uboot.env 0x0000 0x4000" > ${D}${sysconfdir}/fw_env.config
    fi
}

do_deploy() {
    install -m 0644 ${B}/edgecount-grub.cfg ${B}/edgecount-grubenv ${DEPLOYDIR}/
}
addtask deploy after do_compile before do_build

SYSTEMD_SERVICE:${PN} = "edgecount-update-trial.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"
FILES:${PN} += "/data /boot/efi ${systemd_system_unitdir}/edgecount-update-trial.service ${sysconfdir}/fw_env.config"

# The tool RAUC edits the boot loader's state with.
EDGECOUNT_BOOT_STATE_TOOL = "${@'libubootenv-bin' if d.getVar('EDGECOUNT_BOOTLOADER') == 'uboot' else 'grub-editenv'}"
# rauc with it, resize2fs (RAUC grows a written slot), veritysetup and openssl (`edgecount update` checks the
# signature and every block before RAUC writes one).
RDEPENDS:${PN} = "${EDGECOUNT_BOOT_STATE_TOOL} \
                  cryptsetup \
                  e2fsprogs-resize2fs \
                  edgecount \
                  openssl-bin \
                  rauc"

BBCLASSEXTEND = ""
