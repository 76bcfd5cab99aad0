#!/usr/bin/env bash
# Makes docs/images/fiji-train.png: the Train Model dialog as ImageJ 1 shows it (under Xvfb, with
# the example image and its label image open), captured from the screen by
# org.cytoseg.ij.TrainDialogScreenshot (src/test/java). Run on demand after a build
# (bash bindings/java/ci.sh, which leaves bindings/java/target/ with the classes and natives):
#   bash bindings/java/src/test/ij/screenshot_train.sh [out.png]
set -euo pipefail
java_dir="$(cd "$(dirname "$0")/../../.." && pwd)"
root="$(cd "$java_dir/../.." && pwd)"
out="$(realpath -m "${1:-$root/docs/images/fiji-train.png}")"
cd "$java_dir"
[ -f target/test-classes/org/cytoseg/ij/TrainDialogScreenshot.class ] && [ -d target/classes/natives ] \
    || { echo "screenshot_train.sh: build first (bash bindings/java/ci.sh)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
users="$(mktemp -d)"
trap 'rm -rf "$users"' EXIT
# An empty user models folder and no ImageJ preferences: the dialog as a new user sees it.
CYTOSEG_USER_MODELS="$users" timeout 120 xvfb-run -a -s "-screen 0 1280x1024x24" \
    java -Duser.home="$users" -cp "target/classes:target/test-classes:/usr/share/java/ij.jar" \
    org.cytoseg.ij.TrainDialogScreenshot "$out"
