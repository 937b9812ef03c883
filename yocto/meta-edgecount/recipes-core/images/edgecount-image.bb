SUMMARY = "edgecount appliance image: boots into counting"
DESCRIPTION = "A minimal systemd image that starts the edgecount watchdog on power-up."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "images"
LICENSE = "MIT"
CVE_PRODUCT = "edgecount"

inherit core-image

IMAGE_FEATURES += "ssh-server-dropbear"
IMAGE_INSTALL:append = " packagegroup-edgecount"
