"""Tests of the whole appliance: pipeline, faults, cameras, the package, the image, Yocto, the quick start."""
