# shellcheck shell=bash disable=SC2154 # onyx, model, sample: set by the sourcing script
# examples.sh — sourced by test_examples.sh and test_install.sh: runs the embedding examples
# (examples/embed_*.c) of one build and checks what they print.
#
#   run_examples DIR SUFFIX OUT
#     DIR/embed_infer$SUFFIX, DIR/embed_threads$SUFFIX, DIR/embed_finetune$SUFFIX are run on
#     $model (an MLP with Dropout made by `onyx init`); $onyx is an onyx command and $sample a
#     CSV batch for the model. OUT (created) receives the files they write, and OUT/summary.txt
#     what they print that must not depend on how they were built (compared across builds).
# Every failure prints what went wrong and exits 1.

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The logits of `onyx run` on $sample, one row of the batch per line.
onyx_logits() {
    "$onyx" run "$model" -i input="$sample" --show 100000 "$@" |
        sed -n 's/^logits: float32 \[[0-9]*,\([0-9]*\)\] = \(.*\)$/\1 \2/p' |
        awk '{ n = $1; for (i = 2; i <= NF; i++) printf "%s%s", $i, ((i - 1) % n == 0 ? "\n" : " ") }'
}

run_examples() {
    local dir=$1 suffix=$2 out=$3
    mkdir -p "$out"
    local name="$dir/*$suffix"

    # embed_infer: a batch from a file. Its classes and scores are those of `onyx run` in its
    # default inference mode, while train mode (Dropout 0.5 active) gives other logits: the
    # example runs with Dropout off without asking.
    "$dir/embed_infer$suffix" "$model" "$sample" >"$out/infer.txt" || fail "$name: embed_infer"
    onyx_logits >"$out/logits_infer.txt"
    onyx_logits --mode train --seed 5 >"$out/logits_train.txt"
    [ "$(wc -l <"$out/logits_infer.txt")" -eq "$(wc -l <"$sample")" ] ||
        fail "could not read the logits of onyx run"
    cmp -s "$out/logits_infer.txt" "$out/logits_train.txt" &&
        fail "train mode gave the same logits as infer mode: the model has no live Dropout"
    paste -d' ' "$out/infer.txt" "$out/logits_infer.txt" | awk '
        # fields: row R: class C (score S) logit_0 logit_1 ...
        { best = 7; for (i = 8; i <= NF; i++) if ($i > $best) best = i
          if ($1 != "row" || $2 != (NR - 1) ":" || $4 != best - 7 ||
              ($6 + 0) - $best > 1e-3 || $best - ($6 + 0) > 1e-3) {
              printf "row %d: embed_infer printed \"%s %s %s %s %s %s\", onyx run gives class %d (score %s)\n",
                     NR - 1, $1, $2, $3, $4, $5, $6, best - 7, $best; bad = 1 } }
        END { exit bad }' || fail "$name: embed_infer disagrees with onyx run"

    # embed_infer without a file: a made-up batch of four rows.
    "$dir/embed_infer$suffix" "$model" >"$out/infer_made_up.txt" || fail "$name: embed_infer (made up)"
    [ "$(grep -c '^row [0-9]*: class [0-9]* (score ' "$out/infer_made_up.txt")" -eq 4 ] ||
        fail "$name: embed_infer (made up) printed: $(cat "$out/infer_made_up.txt")"

    # embed_threads: four threads on one model, bit-identical results.
    "$dir/embed_threads$suffix" "$model" 4 >"$out/threads.txt" || fail "$name: embed_threads: $(cat "$out/threads.txt")"
    grep -q '^4 threads x 200 runs on one model: 800 identical to the reference$' "$out/threads.txt" ||
        fail "$name: embed_threads printed: $(cat "$out/threads.txt")"

    # embed_finetune: trains, writes a checkpoint and the exported model, which predicts what
    # the trainer predicts (the program checks that itself and exits non-zero otherwise).
    "$dir/embed_finetune$suffix" "$model" "$out" >"$out/finetune.txt" ||
        fail "$name: embed_finetune: $(cat "$out/finetune.txt")"
    grep -q '^exported model vs trainer: largest difference 0$' "$out/finetune.txt" ||
        fail "$name: embed_finetune printed: $(cat "$out/finetune.txt")"
    "$onyx" info "$out/checkpoint.zip" | grep -q '^step: 30$' ||
        fail "$name: the checkpoint of embed_finetune is not at step 30"
    "$dir/embed_infer$suffix" "$out/finetuned.onnx" "$sample" >"$out/infer_finetuned.txt" ||
        fail "$name: embed_infer on the exported model"

    cat "$out/infer.txt" "$out/infer_made_up.txt" "$out/threads.txt" \
        <(grep -v '^wrote ' "$out/finetune.txt") "$out/infer_finetuned.txt" >"$out/summary.txt"
    echo "ok: $name"
}
