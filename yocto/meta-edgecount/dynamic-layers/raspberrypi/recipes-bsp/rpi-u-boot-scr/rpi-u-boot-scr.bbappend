# The A/B boot script (files/boot.cmd.in): U-Boot starts slot A or B as RAUC's environment says.
FILESEXTRAPATHS:prepend:edgecount-os := "${THISDIR}/files:"
