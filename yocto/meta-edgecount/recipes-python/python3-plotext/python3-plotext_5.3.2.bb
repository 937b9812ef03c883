SUMMARY = "Plots in the terminal"
DESCRIPTION = "plotext draws line and bar charts with text characters; `edgecount counts --chart` uses it \
               for the technician. The layers of scarthgap do not carry it."
HOMEPAGE = "https://github.com/piccolomo/plotext"
BUGTRACKER = "https://github.com/piccolomo/plotext/issues"
SECTION = "devel/python"
LICENSE = "MIT"
CVE_PRODUCT = "plotext"
LIC_FILES_CHKSUM = "file://LICENSE;md5=361f13acdcb2a156891c860a69cb99dd"

SRC_URI[sha256sum] = "52d1e932e67c177bf357a3f0fe6ce14d1a96f7f7d5679d7b455b929df517068e"

inherit pypi setuptools3

RDEPENDS:${PN} += "python3-core"

BBCLASSEXTEND = "native nativesdk"
