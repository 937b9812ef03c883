# edgecount tasks. `just demo` and `just test` are the README's quick start.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
# Where models and the PETS09 clip are mirrored; without it they are downloaded.
export EDGECOUNT_ASSET_MIRROR := env_var_or_default("EDGECOUNT_ASSET_MIRROR", if path_exists("../shared/assets") == "true" { "../shared/assets" } else { "" })
export XDG_CACHE_HOME := env_var_or_default("XDG_CACHE_HOME", justfile_directory() / ".cache")

# list the recipes
default:
    @just --list

# create the virtual environment and install edgecount with its dev tools
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        python3 -m venv {{venv}}
        {{venv}}/bin/pip install --quiet --upgrade pip
        {{venv}}/bin/pip install --quiet -e '.[dev]'
        rm -f {{venv}}/.installed-*; touch "$stamp"
    fi

# the built-in demo: the whole multi-process pipeline over the PETS09 clip, printing counts per line
demo: setup
    {{venv}}/bin/edgecount models fetch yolox_nano pets09
    {{venv}}/bin/edgecount replay asset:pets09 --config config/demo.toml

# lint, type-check and run every test
test: setup
    {{venv}}/bin/ruff check libs services tests
    {{venv}}/bin/mypy -p edgecount_core
    {{venv}}/bin/python -m pytest -q

# benchmarks: print numbers, assert nothing
bench: setup
    {{venv}}/bin/pip install --quiet -e '.[dev,peers]'
    {{py}} tests/bench/bench_runtime.py
    {{py}} tests/bench/bench_tracking.py

# build the Debian (Mendel) package into build/
deb:
    bash yocto/debian/build-deb.sh build
