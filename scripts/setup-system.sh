#!/usr/bin/env bash
# Installs the system packages the tests need on Debian 12, only those that are missing
# (apt-get, with sudo when not root): gcc/g++/valgrind for the C API tests; qemu-user and unzip
# for the pre-AVX CPU test (tests/cpu/baseline_cpu.sh); Xvfb and the X/Qt
# libraries for napari; a JDK, Debian's ImageJ 1, offline Maven with Debian's plugins and JUnit 5
# for the Fiji plugin; headless Chromium to render the QC report (tests/qc_report.rs); rustfmt
# and clippy. Called by scripts/test-all.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for tool in gcc g++ valgrind qemu-x86_64 unzip; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    pkgs=()
    for t in "${need[@]}"; do
        case "$t" in gcc) pkgs+=(gcc) ;; g++) pkgs+=(g++) ;; valgrind) pkgs+=(valgrind) ;;
            qemu-x86_64) pkgs+=(qemu-user) ;; unzip) pkgs+=(unzip) ;; esac
    done
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${pkgs[@]}"
fi
# Python/napari tests (bindings/python/ci.sh): a venv, Xvfb and the X/GL libraries PyQt6 needs.
gui=(python3-venv xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0
     libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3)
missing=()
for p in "${gui[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Fiji/ImageJ plugin tests (bindings/java/ci.sh): Debian's ImageJ 1, a JDK, offline Maven with
# Debian's repository and plugins, JUnit 5, Xvfb.
java_pkgs=(openjdk-17-jdk-headless imagej maven maven-debian-helper maven-repo-helper junit5
           libsurefire-java libmaven-compiler-plugin-java libmaven-jar-plugin-java
           libmaven-resources-plugin-java libmaven-install-plugin-java xvfb xauth)
missing=()
for p in "${java_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The QC report's HTML must render in a browser (tests/qc_report.rs renders it headless).
if ! command -v chromium >/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
