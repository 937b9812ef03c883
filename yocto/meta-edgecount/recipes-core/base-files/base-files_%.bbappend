# The A/B image's fstab (yocto/image/fstab, the Debian image's too): the EFI partition, and the data partition
# bound over /etc/edgecount and /var/lib/edgecount. The root file system is the slot the kernel was given.
FILESEXTRAPATHS:prepend:edgecount-os := "${THISDIR}/../../../image:"
