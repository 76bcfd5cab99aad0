#!/usr/bin/env bash
# Builds and tests the Fiji/ImageJ plugin (bindings/java), offline, on Debian 12:
#   1. stages target/release/libcytoseg.so (debug info stripped) as natives/linux_x86_64/;
#   2. mvn package with Debian's Maven repository: compiles, runs the JUnit tests under Xvfb,
#      writes target/cytoseg_-<version>.jar (library + the bundled models inside: every name of
#      src/main/resources/cytoseg-models.txt, checked below);
#   3. integration test: the real ImageJ 1 (Debian's, -batch under xvfb-run, with timeout) runs
#      src/test/ij/segment_example.ijm on models/examples/nuclei_example.tif, and the label image,
#      ROI count, Results table and measurements must equal `cytoseg segment` on the same image
#      with the same settings, its QC measures (image properties) as summary.csv's QC columns; Segment Folder as
#      `cytoseg segment` (and its QC report, and QC Report...); Train Model (a tiny run on the
#      example and its labels, then from the ROI Manager) makes clones that Segment Image, Segment
#      Folder and the CLI find by name; About; error paths.
# Clones go to a temporary user models folder (CYTOSEG_USER_MODELS; pom.xml sets one for JUnit).
# Needs: cargo build --release done; apt packages imagej maven junit5 libsurefire-java
# libmaven-{compiler,jar,resources,install}-plugin-java xvfb xauth (.ci/run installs them); ONNX
# Runtime (scripts/setup-ort.sh puts it in ./.venv; ORT_DYLIB_PATH is set from there).
# ONNX Runtime is bundled into the jar (natives/linux_x86_64/libonnxruntime.so.*) by default, as
# users get it: a Fiji user needs no Python; the ImageJ runs below unset ORT_DYLIB_PATH so they
# must use it. CYTOSEG_BUNDLE_ORT=0 builds a jar without it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

lib="$root/target/release/libcytoseg.so"
[ -f "$lib" ] || { echo "ci.sh: $lib is missing: run cargo build --release first" >&2; exit 1; }
for tool in mvn xvfb-run java; do
    command -v "$tool" >/dev/null || { echo "ci.sh: $tool is missing (apt-get install maven xvfb xauth default-jdk)" >&2; exit 1; }
done
[ -f /usr/share/java/ij.jar ] || { echo "ci.sh: /usr/share/java/ij.jar is missing (apt-get install imagej)" >&2; exit 1; }

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -n 1 || true)"
    [ -n "$ORT_DYLIB_PATH" ] && export ORT_DYLIB_PATH
fi
echo "== natives: $lib -> natives/linux_x86_64/ (ONNX Runtime: ${ORT_DYLIB_PATH:-engine search})"
rm -rf natives && mkdir -p natives/linux_x86_64
if command -v strip >/dev/null; then
    strip --strip-debug -o natives/linux_x86_64/libcytoseg.so "$lib"
else
    cp "$lib" natives/linux_x86_64/libcytoseg.so
fi
bundle_ort=${CYTOSEG_BUNDLE_ORT:-1}
if [ "$bundle_ort" = 1 ] && [ -z "${ORT_DYLIB_PATH:-}" ]; then
    echo "ci.sh: no ONNX Runtime to bundle (run scripts/setup-ort.sh, or set ORT_DYLIB_PATH)" >&2; exit 1
fi
if [ "$bundle_ort" = 1 ]; then
    ort_real="$(readlink -f "$ORT_DYLIB_PATH")"
    cp "$ort_real" "natives/linux_x86_64/$(basename "$ort_real")"
    basename "$ort_real" > natives/linux_x86_64/onnxruntime.txt
fi

echo "== mvn package (offline, Debian repository; JUnit under Xvfb)"
rm -rf target   # `mvn clean` needs a plugin Debian lacks offline
timeout 600 xvfb-run -a mvn -B -o -q -s /etc/maven/settings-debian.xml package
jar="$(ls target/cytoseg_-*.jar)"
echo "built $jar ($(du -h "$jar" | cut -f1))"
listing="$(unzip -l "$jar")"
while read -r model; do
    [ -n "$model" ] || continue
    for f in manifest.json model.onnx README.md; do
        grep -q " models/$model/$f\$" <<<"$listing" \
            || { echo "ci.sh: $jar lacks models/$model/$f (pom.xml resources)" >&2; exit 1; }
    done
done < src/main/resources/cytoseg-models.txt

echo "== ImageJ 1 integration test (xvfb-run, -batch macro) vs the cytoseg CLI"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Every run below (ImageJ and the CLI) saves and finds the user's models here, never in ~.
export CYTOSEG_USER_MODELS="$work/user-models"
mkdir -p "$work/ij/plugins" "$work/cli" "$work/ijout"
cp "$jar" "$work/ij/plugins/"
image="$root/models/examples/nuclei_example.tif"
"$root/target/release/cytoseg" -q segment "$image" --out "$work/cli" --model nuclei --device cpu \
    --cellprob-threshold 0 --flow-threshold 0.4
cli_labels="$work/cli/nuclei_example_labels.tif"
log="$work/ij.log"
# The ImageJ runs get no ORT_DYLIB_PATH: with the default jar they use the bundled ONNX Runtime.
ij_env=(env)
[ "$bundle_ort" = 1 ] && ij_env=(env -u ORT_DYLIB_PATH)
if ! timeout 180 "${ij_env[@]}" xvfb-run -a java -Xmx2g -jar /usr/share/java/ij.jar -ijpath "$work/ij" -batch \
        "$here/src/test/ij/segment_example.ijm" "$image|$work/ijout|$cli_labels" >"$log" 2>&1; then
    cat "$log"; echo "ci.sh: ImageJ failed or timed out" >&2; exit 1
fi
cat "$log"
python3 "$here/src/test/ij/check_integration.py" "$log" "$work/ijout/ij_results.csv" \
    "$work/cli/nuclei_example_objects.csv" "$work/cli/summary.csv"
echo "== Segment Folder in ImageJ (the engine's batch via JNI) writes what cytoseg segment writes"
mkdir -p "$work/folder_in"
cp "$image" "$work/folder_in/"
dsb="$root/../shared/data/dsb2018-fluo/sample/images"
[ -d "$dsb" ] && ls "$dsb"/*.tif | head -n 2 | xargs -I{} cp {} "$work/folder_in/"
"$root/target/release/cytoseg" -q segment "$work/folder_in" --out "$work/folder_cli" --model nuclei \
    --device cpu --cellprob-threshold 0 --flow-threshold 0.4
if ! timeout 300 "${ij_env[@]}" xvfb-run -a java -Xmx2g -jar /usr/share/java/ij.jar -ijpath "$work/ij" -batch \
        "$here/src/test/ij/segment_folder.ijm" "$work/folder_in|$work/folder_ij" >"$work/folder.log" 2>&1; then
    cat "$work/folder.log"; echo "ci.sh: Segment Folder failed or timed out" >&2; exit 1
fi
cat "$work/folder.log"
grep -q "FOLDER_DONE" "$work/folder.log" || { echo "ci.sh: the Segment Folder macro did not finish" >&2; exit 1; }
n=0
for f in "$work"/folder_cli/*_labels.tif "$work"/folder_cli/*_objects.csv; do
    cmp "$f" "$work/folder_ij/$(basename "$f")" || { echo "ci.sh: Segment Folder's $(basename "$f") differs from the CLI's" >&2; exit 1; }
    n=$((n + 1))
done
diff <(cut -d, -f1-10,12- "$work/folder_cli/summary.csv") <(cut -d, -f1-10,12- "$work/folder_ij/summary.csv") \
    || { echo "ci.sh: Segment Folder's summary.csv differs from the CLI's" >&2; exit 1; }
grep -q '"api": "java"' "$work/folder_ij/run.json" || { echo "ci.sh: run.json does not record the Java caller" >&2; exit 1; }
[ -s "$work/folder_ij/qc/qc_report.html" ] && [ -s "$work/folder_ij/qc/qc_images.csv" ] \
    || { echo "ci.sh: Segment Folder (qc_report) / QC Report... did not write qc/qc_report.html" >&2; exit 1; }
[ "$(grep -c "cytoseg: QC: [0-9]* image(s) in 1 group(s).*report: $work/folder_ij/qc/qc_report.html" "$work/folder.log")" -ge 2 ] \
    || { echo "ci.sh: Segment Folder and QC Report... did not both log the QC verdict and the report's path" >&2; exit 1; }
echo "Segment Folder = cytoseg segment: $n files byte-identical, summary.csv equal but for times"

echo "== Train Model in ImageJ (a tiny run) -> a clone that Segment Image, Segment Folder and the CLI find by name"
clone=fiji-ci-clone
mkdir -p "$work/train_tmp"
# java.io.tmpdir is the run's own, so that the staging folders' deletion can be checked.
if ! timeout 300 "${ij_env[@]}" xvfb-run -a java -Xmx2g -Djava.io.tmpdir="$work/train_tmp" -jar /usr/share/java/ij.jar \
        -ijpath "$work/ij" -batch "$here/src/test/ij/train_model.ijm" \
        "$image|$root/models/examples/nuclei_example_labels.tif|$clone|$work/train_ij" >"$work/train.log" 2>&1; then
    cat "$work/train.log"; echo "ci.sh: the Train Model macro failed or timed out" >&2; exit 1
fi
cat "$work/train.log"
for want in "TRAIN_DONE" "CLONE_LABEL_BITDEPTH=16" "CLONE_DIFF_MAX=0" "the model $clone is in $CYTOSEG_USER_MODELS/$clone"; do
    grep -qF "$want" "$work/train.log" || { echo "ci.sh: expected \"$want\" in the Train Model output" >&2; exit 1; }
done
for c in "$clone" "$clone-rois"; do
    for f in manifest.json model.onnx MODEL_CARD.md loss.csv loss.png; do
        [ -f "$CYTOSEG_USER_MODELS/$c/$f" ] || { echo "ci.sh: Train Model did not write $c/$f" >&2; exit 1; }
    done
    grep -qF "Plugins > cytoseg > Train Model" "$CYTOSEG_USER_MODELS/$c/manifest.json" \
        || { echo "ci.sh: $c's lineage does not name Train Model" >&2; exit 1; }
done
if ls "$work/train_tmp" | grep -q '^cytoseg-train-'; then
    echo "ci.sh: Train Model left its staging folder behind" >&2; exit 1
fi
listed="$("$root/target/release/cytoseg" models)"; grep -q "^$clone " <<<"$listed" || { echo "ci.sh: cytoseg models does not list $clone" >&2; exit 1; }
"$root/target/release/cytoseg" -q segment "$image" --out "$work/train_cli" --model "$clone" --device cpu \
    --cellprob-threshold 0 --flow-threshold 0.4
for f in nuclei_example_labels.tif nuclei_example_objects.csv; do
    cmp "$work/train_cli/$f" "$work/train_ij/$f" || { echo "ci.sh: $f with the clone differs between the CLI and Fiji" >&2; exit 1; }
done
echo "Train Model: clones $clone and $clone-rois saved; the CLI segments with $clone as Fiji does"

echo "== About cytoseg (ONNX Runtime $( [ "$bundle_ort" = 1 ] && echo "bundled in the jar, ORT_DYLIB_PATH unset" || echo "from the engine's search"))"
printf 'run("About cytoseg");\nprint(getInfo("log"));\n' > "$work/about.ijm"
if [ "$bundle_ort" = 1 ]; then
    env -u ORT_DYLIB_PATH timeout 60 xvfb-run -a java -jar /usr/share/java/ij.jar -ijpath "$work/ij" -batch "$work/about.ijm" >"$work/about.log" 2>&1 || true
else
    timeout 60 xvfb-run -a java -jar /usr/share/java/ij.jar -ijpath "$work/ij" -batch "$work/about.ijm" >"$work/about.log" 2>&1 || true
fi
cat "$work/about.log"
grep -q "^cytoseg engine " "$work/about.log" && grep -q "^ONNX Runtime [0-9]" "$work/about.log" \
    && grep -q "^model nuclei " "$work/about.log" || { echo "ci.sh: About cytoseg did not report the versions" >&2; exit 1; }
grep -q "^your models .*: .*$clone" "$work/about.log" || { echo "ci.sh: About cytoseg does not list the clone $clone" >&2; exit 1; }
if [ "$bundle_ort" = 1 ]; then
    grep -q "^ONNX Runtime .*cytoseg-natives-" "$work/about.log" || { echo "ci.sh: the bundled ONNX Runtime was not used" >&2; exit 1; }
fi

echo "== ImageJ 1 error paths (-batch): messages, no modal dialog, ImageJ keeps running"
if ! timeout 60 "${ij_env[@]}" xvfb-run -a java -jar /usr/share/java/ij.jar -ijpath "$work/ij" -batch \
        "$here/src/test/ij/errors.ijm" "$image" >"$work/err.log" 2>&1; then
    cat "$work/err.log"; echo "ci.sh: the error-path macro failed or hung" >&2; exit 1
fi
cat "$work/err.log"
for want in "cytoseg: model_file: /no/such/model does not exist" "AFTER_MISSING_MODEL" \
        "is an RGB image: a label image must be" "AFTER_RGB_LABELS" "smaller than 2" \
        "model name \"bad/name\"" "AFTER_BAD_NAME" "The ROI Manager is empty" "AFTER_EMPTY_ROIS" "DONE"; do
    grep -qF "$want" "$work/err.log" || { echo "ci.sh: expected \"$want\" in the error-path output" >&2; exit 1; }
done
echo "== Fiji/ImageJ plugin: all checks passed"
