#!/usr/bin/env bash
# Builds the C tests against the cdylib and runs them (under valgrind when available).
# Usage: tests/c/run.sh [target/release]     (the folder holding libcytoseg.so)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libdir=$(cd "${1:-$root/target/release}" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-Wall -Wextra -Werror -pedantic -I "$root/include")

echo "== header compiles alone: C11 and C++17"
gcc -std=c11 "${flags[@]}" -c "$here/header_alone.c" -o "$out/h.o"
cp "$here/header_alone.c" "$out/header_alone.cpp"
g++ -std=c++17 "${flags[@]}" -c "$out/header_alone.cpp" -o "$out/hpp.o"

echo "== C API tests"
gcc -std=c11 "${flags[@]}" -g "$here/test_api.c" -o "$out/test_api" \
    -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
export CYTOSEG_USER_MODELS="$out/user-models"
"$out/test_api"
if command -v valgrind >/dev/null; then
    echo "== C API tests under valgrind (errors and leaks are failures)"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        "$out/test_api"
else
    echo "valgrind not installed: memory check skipped"
fi
passed=1
echo "== C measurement tests"
gcc -std=c11 "${flags[@]}" -g "$here/test_measure.c" -o "$out/test_measure" \
    -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
"$out/test_measure"
if command -v valgrind >/dev/null; then
    echo "== C measurement tests under valgrind (errors and leaks are failures)"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        "$out/test_measure"
fi
passed=$((passed + 1))
echo "== C classifier tests in memory: train on picked objects, classify a label image"
gcc -std=c11 "${flags[@]}" -g "$here/test_classify_images.c" -o "$out/test_classify_images" \
    -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
mkdir -p "$out/classify_images"
"$out/test_classify_images" "$out/classify_images"
if command -v valgrind >/dev/null; then
    echo "== C classifier tests in memory under valgrind (errors and leaks are failures)"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        "$out/test_classify_images" "$out/classify_images" >/dev/null
fi
passed=$((passed + 1))
passed=$((passed + 1))
# Model tests need ONNX Runtime: $ORT_DYLIB_PATH or the repository's .venv (pip install onnxruntime).
ort="${ORT_DYLIB_PATH:-}"
if [ -z "$ort" ]; then
    ort=$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -n 1 || true)
fi
if [ -n "$ort" ] && [ -f "$ort" ]; then
    echo "== C model tests (ONNX Runtime: $ort)"
    gcc -std=c11 "${flags[@]}" -g "$here/test_model.c" -o "$out/test_model" \
        -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
    model="$root/tests/fixtures/models/blobs"
    "$out/test_model" "$model" "$ort"
    if command -v valgrind >/dev/null; then
        echo "== C model tests under valgrind (errors in cytoseg; ONNX Runtime's own allocations are suppressed)"
        RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full \
            --suppressions="$here/valgrind.supp" --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect "$out/test_model" "$model" "$ort"
    fi
    passed=$((passed + 1))
    echo "== C batch tests: cytoseg_segment_folder, cancel + resume, and the same outputs as cytoseg segment"
    gcc -std=c11 "${flags[@]}" -g "$here/test_batch.c" -o "$out/test_batch" \
        -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
    # Real nuclei (the example image and two DSB2018 images when ../shared is there, else
    # fixtures) with the bundled model, and a broken file.
    mkdir -p "$out/in" "$out/in_small"
    cp "$root/models/examples/nuclei_example.tif" "$out/in/"
    dsb="$root/../shared/data/dsb2018-fluo/sample/images"
    if [ -d "$dsb" ]; then
        ls "$dsb"/*.tif | head -n 2 | xargs -I{} cp {} "$out/in/"
    else
        cp "$root/tests/fixtures/images/gray_uint16_lzw.tif" "$root/tests/fixtures/images/rgb.png" "$out/in/"
    fi
    cp "$root/tests/fixtures/images/broken_truncated.tif" "$out/in/"
    for f in gray_uint16_lzw.tif imagej_tzcyx.tif rgb.png broken_truncated.tif; do
        cp "$root/tests/fixtures/images/$f" "$out/in_small/"
    done
    mkdir -p "$out/in_hostile"
    cp "$root"/tests/fixtures/hostile/*.tif "$root"/tests/fixtures/hostile/*.png \
        "$root"/tests/fixtures/hostile/*.npy "$out/in_hostile/"
    n_hostile=$(ls "$out/in_hostile" | wc -l)
    cp "$root/models/examples/nuclei_example.tif" "$out/in_hostile/"
    nuclei="$root/models/nuclei"
    mkdir -p "$out/in_seeds"
    for t in read_tiff read_raster read_npy; do cp -r "$root/fuzz/seeds/$t" "$out/in_seeds/"; done
    n_seeds=$(find "$out/in_seeds" -type f | wc -l)
    mkdir -p "$out/in_stack"
    cp "$root/tests/fixtures/volume_pipeline/nuclei_stack.tif" "$out/in_stack/"
    "$out/test_batch" "$nuclei" "$ort" "$out/in" "$out/c" "$out/c_cancelled" "$out/in_hostile" "$n_hostile" \
        "$out/in_seeds" "$n_seeds" "$out/in_stack"
    cli="$libdir/cytoseg"
    if [ -x "$cli" ]; then
        "$cli" -q segment "$out/in" --out "$out/cli" --model "$nuclei" --device cpu --ort-lib "$ort" --jobs 2 || true
        for d in c c_cancelled; do
            for f in "$out"/cli/*_labels.tif "$out"/cli/*_objects.csv; do
                cmp "$f" "$out/$d/$(basename "$f")" || { echo "FAILED: $d/$(basename "$f") differs from cytoseg segment's" >&2; exit 1; }
            done
            # summary.csv: every column but the status of the latest run (2) and the time (11)
            diff <(cut -d, -f1,3-10,12- "$out/cli/summary.csv") <(cut -d, -f1,3-10,12- "$out/$d/summary.csv") \
                || { echo "FAILED: $d/summary.csv differs from cytoseg segment's" >&2; exit 1; }
        done
        grep -q '"caller": "test_batch.c"' "$out/c/run.json" || { echo "FAILED: run.json lacks the C caller" >&2; exit 1; }
        "$cli" -q segment "$out/in_stack" --out "$out/cli_3d" --model "$nuclei" --device cpu --ort-lib "$ort" --do-3d
        for f in "$out"/cli_3d/*_labels.tif "$out"/cli_3d/*_objects.csv; do
            cmp "$f" "$out/c_3d/$(basename "$f")" || { echo "FAILED: c_3d/$(basename "$f") differs from cytoseg segment --do-3d's" >&2; exit 1; }
        done
        grep -q '"mode": "do_3d"' "$out/c_3d/run.json" || { echo "FAILED: run.json lacks the 3-D mode" >&2; exit 1; }
        echo "C batch outputs equal cytoseg segment's: $(ls "$out"/cli/*_labels.tif | wc -l) label images ($(tail -n +2 "$out"/cli/*_objects.csv | grep -vc '^==>\|^$') objects), their tables and summary.csv"
    else
        echo "cytoseg executable not beside the library: output comparison with the CLI skipped"
    fi
    if command -v valgrind >/dev/null; then
        echo "== C batch tests under valgrind (small model and images)"
        RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full \
            --suppressions="$here/valgrind.supp" --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect "$out/test_batch" "$model" "$ort" "$out/in_small" "$out/v" "$out/v_cancelled" >/dev/null
    fi
    passed=$((passed + 1))
    if [ -x "$cli" ]; then
        echo "== C classifier test: train on objects of cytoseg segment's output (class: area above the median), apply"
        gcc -std=c11 "${flags[@]}" -g "$here/test_classify.c" -o "$out/test_classify" \
            -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
        cls_labels="$out/classify_labels.csv"
        for t in "$out"/cli/*_objects.csv; do
            stem=$(basename "$t" _objects.csv)
            awk -F, -v s="$stem" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "label") l = i; if ($i ~ /^area/) a = i } next }
                { print s "," $l "," $a }' "$t"
        done > "$out/areas.txt"
        median=$(cut -d, -f3 "$out/areas.txt" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        { echo "image,label,class"; awk -F, -v m="$median" '{ print $1 "," $2 "," ($3 > m ? "large" : "small") }' "$out/areas.txt"; } > "$cls_labels"
        mkdir -p "$out/classify_work"
        "$out/test_classify" "$out/cli" "$cls_labels" "$out/classify_work"
        head -n 1 "$out"/cli/nuclei_example_objects.csv | grep -q ',class,class_probability,probability_large,probability_small$' \
            || { echo "FAILED: the objects table lacks the class columns" >&2; exit 1; }
        if command -v valgrind >/dev/null; then
            echo "== C classifier test under valgrind"
            RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=1 --leak-check=full --suppressions="$here/valgrind.supp" \
                --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
                "$out/test_classify" "$out/cli" "$cls_labels" "$out/classify_work" >/dev/null
        fi
        passed=$((passed + 1))
        echo "== C training test: cytoseg_train cancelled by its callback, resumed, the clone written"
        gcc -std=c11 "${flags[@]}" -g "$here/test_train.c" -o "$out/test_train" \
            -L "$libdir" -lcytoseg -lpthread -lm -Wl,-rpath,"$libdir"
        mkdir -p "$out/train_img"
        cp "$root/models/examples/nuclei_example.tif" "$out/train_img/"
        # labels to train on: the bundled model's own segmentation of the example image
        "$cli" -q segment "$out/train_img" --out "$out/train_lbl" --model "$nuclei" --device cpu \
            --ort-lib "$ort" --no-objects
        "$out/test_train" "$nuclei" "$out/train_img" "$out/train_lbl" "$out/trained"
        passed=$((passed + 1))
    fi
else
    echo "SKIPPED C model tests: no ONNX Runtime (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
fi
echo "C tests: $passed passed, 0 failed"
