SUMMARY = "Signed RAUC bundle (verity) of the edgecount image's root file system"
DESCRIPTION = "The next version for devices in the field: edgecount-image's root file system as one slot \
               image, signed with the build's update key; `edgecount update` installs it into the other slot."
HOMEPAGE = "https://github.com/edgecount/edgecount"
BUGTRACKER = "https://github.com/edgecount/edgecount/issues"
SECTION = "base"
LICENSE = "MIT"
CVE_PRODUCT = "edgecount"

# Its input is edgecount-image's deployed root file system: nothing to fetch.
SRC_URI = ""

inherit bundle

RAUC_BUNDLE_FORMAT = "verity"
RAUC_BUNDLE_COMPATIBLE = "${EDGECOUNT_RAUC_COMPATIBLE}"
RAUC_BUNDLE_VERSION = "${PV}"
RAUC_BUNDLE_DESCRIPTION = "edgecount appliance ${PV}"
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "edgecount-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Development: the CA signs directly (as `just bundle` does). Production: a signing certificate issued by an
# offline CA, its key on the build service only (README, "Updating devices in the field").
RAUC_KEY_FILE ?= "${EDGECOUNT_KEYS_DIR}/ca.key.pem"
RAUC_CERT_FILE ?= "${EDGECOUNT_KEYS_DIR}/ca.cert.pem"
RAUC_KEYRING_FILE ?= "${EDGECOUNT_KEYS_DIR}/ca.cert.pem"

BBCLASSEXTEND = ""
