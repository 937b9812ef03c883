# The A/B script (yocto/image/grub.cfg) finds its disk with regexp, which Yocto's GRUB does not build in.
GRUB_BUILDIN:append:edgecount-os = " regexp"
