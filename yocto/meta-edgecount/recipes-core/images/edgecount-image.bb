SUMMARY = "edgecount appliance image: boots into counting"
DESCRIPTION = "A minimal systemd image that starts the edgecount watchdog on power-up, one half of an A/B pair \
               (RAUC): a disk image with two root file system slots and a data partition."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "images"
LICENSE = "MIT"
CVE_PRODUCT = "edgecount"

inherit core-image

IMAGE_FEATURES += "ssh-server-dropbear"
# The kernel goes into the slot (/boot), so an update replaces it with the rest of the system.
IMAGE_INSTALL:append = " packagegroup-edgecount edgecount-slots kernel-image"

# ext4: the slot image a bundle carries (edgecount-bundle); wic: the disk a technician flashes.
IMAGE_FSTYPES:append = " ext4 wic"
WKS_FILE = "edgecount-ab-${EDGECOUNT_BOOTLOADER}.wks.in"
WKS_FILE_DEPENDS:append = " edgecount-slots"
do_image_wic[depends] += "edgecount-slots:do_deploy"
# GRUB's environment (which slot, how often tried) on the EFI partition, beside the script that reads it.
IMAGE_EFI_BOOT_FILES:append = " edgecount-grubenv;EFI/BOOT/grubenv"

# What must outlive an update moves to the data partition's tree (/data, its own partition in the wic image):
# the configuration and the counter's state, bound back over /etc/edgecount and /var/lib/edgecount by fstab.
edgecount_split_data() {
    install -d ${IMAGE_ROOTFS}/data/etc ${IMAGE_ROOTFS}/data/lib
    cp -a ${IMAGE_ROOTFS}${sysconfdir}/edgecount ${IMAGE_ROOTFS}/data/etc/edgecount
    if [ -d ${IMAGE_ROOTFS}${localstatedir}/lib/edgecount ]; then
        cp -a ${IMAGE_ROOTFS}${localstatedir}/lib/edgecount ${IMAGE_ROOTFS}/data/lib/edgecount
    else
        install -d ${IMAGE_ROOTFS}/data/lib/edgecount
    fi
    install -d ${IMAGE_ROOTFS}${localstatedir}/lib/edgecount
}
edgecount_split_data[doc] = "Copies the configuration and the counter's state into the data partition's tree"
ROOTFS_POSTPROCESS_COMMAND += "edgecount_split_data"
