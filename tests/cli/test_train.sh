#!/usr/bin/env bash
# test_train.sh — `onyx train`, `onyx export` and `onyx info CKPT.zip` on a slice of the digits
# data: the loss falls, --json lines, exact resume (straight == stopped + resumed, bit for bit,
# with dropout and shuffling on), kill -9 and Ctrl-C during training, a loss that becomes NaN,
# bad input (each a one-line message and a non-zero status), and the model of a checkpoint
# equal to the trainer's export when run with `onyx run`.
#
# Environment: ONYX_BIN (the onyx command) and ONYX_SOURCE_DIR (the source tree), set by ctest.
set -u
cli_dir=$(cd "$(dirname "$0")" && pwd)

onyx=${ONYX_BIN:?ONYX_BIN must name the onyx command}
src=${ONYX_SOURCE_DIR:?ONYX_SOURCE_DIR must name the source tree}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
# shellcheck source=lib.sh
. "$cli_dir/lib.sh"

# steps FILE: the per-step JSON lines of a run, from step FROM on ("step N loss L" per line).
steps_from() {
    awk -v from="$2" -F'[{}:,]' '/"lr"/ {
        for (i = 2; i < NF; i += 2) v[$i] = $(i + 1)
        if (v["\"step\""] + 0 >= from) print v["\"step\""], v["\"loss\""] }' "$1"
}

# json_field FILE NAME: the value of "NAME" in the one-line JSON object of FILE.
json_field() {
    sed -n "s/.*\"$2\": *\([^,}]*\).*/\1/p" "$1" | head -n 1
}

# wait_lines FILE N: waits (up to ~20 s) until FILE has at least N lines.
wait_lines() {
    local i
    for i in $(seq 1000); do
        [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
        sleep 0.02
    done
    return 1
}

# ---- data: 200 training and 60 validation rows of the digits ----------------------------
data="$src/examples/data"
head -n 200 "$data/digits_train.csv" >train.csv
head -n 60 "$data/digits_test.csv" >val.csv
cut -d, -f1-64 val.csv >val_x.csv
{ echo "$(seq -s, -f 'p%g' 0 63),label"; cat train.csv; } >header.csv

expect_ok init --layers 64,16,10 --seed 3 -o mlp.onnx
expect_ok init --layers 64,16,10 --dropout 0.2 --seed 3 -o drop.onnx
for cmd in train export; do
    expect_ok "$cmd" --help
    check '[[ "$out" == "usage: onyx $cmd"* ]]' "onyx $cmd --help prints no usage"
done

# ---- the loss falls; text and JSON output -------------------------------------------------
expect_ok train mlp.onnx --data train.csv --val val.csv --loss ce --optimizer adam --lr 0.01 \
    --epochs 4 --json
printf '%s\n' "$out" >run.json
first=$(grep '"train_loss"' run.json | head -n 1 | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
last=$(grep '"train_loss"' run.json | tail -n 1 | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
check 'awk -v a="$first" -v b="$last" "BEGIN { exit !(b < 0.7 * a) }"' \
    "the training loss did not fall: $first -> $last"
n_step=$(grep -c '^{"step":[0-9]*,"epoch":[0-9]*,"loss":[-0-9.e+]*,"lr":[-0-9.e+]*}$' run.json)
n_epoch=$(grep -c '^{"epoch":[0-9]*,"step":[0-9]*,"train_loss":[-0-9.e+]*,"val_loss":[-0-9.e+]*,"val_accuracy":[-0-9.e+]*}$' run.json)
n_all=$(wc -l <run.json)
check '[ "$n_step" -eq 28 ] && [ "$n_epoch" -eq 4 ] && [ "$n_all" -eq 32 ]' \
    "--json: $n_step step lines (28), $n_epoch epoch lines (4), $n_all lines in all (32)"
acc=$(grep '"val_accuracy"' run.json | tail -n 1 | sed 's/.*"val_accuracy":\([^,}]*\).*/\1/')
check 'awk -v a="$acc" "BEGIN { exit !(a > 0.5 && a <= 1) }"' "val_accuracy $acc after 4 epochs"
expect_ok train mlp.onnx --data train.csv --loss ce --epochs 2 --json --log-every 5
check '[ "$(printf "%s\n" "$out" | grep -c "\"lr\"")" -eq 2 ]' \
    "--log-every 5 over 14 steps: expected 2 step lines: $out"
check '! printf "%s\n" "$out" | grep -q val_loss' "val fields without --val: $out"

expect_ok train mlp.onnx --data header.csv --val val.csv --loss ce --epochs 2 --batch-size 50
check '[[ "$out" == *"200 samples of 64 features"* ]]' "the CSV header was not skipped: $out"
check '[[ "$out" == *"epoch 2/2: loss "*", val_loss "*", val_accuracy "*"%"* ]]' \
    "no epoch line with validation: $out"
cr=$'\r'
check '[[ "$out" == *"steps per epoch"* && "$out" != *"$cr"* ]]' "plain lines expected: $out"
if command -v script >/dev/null 2>&1; then
    script -qc "'$onyx' train mlp.onnx --data train.csv --loss ce --epochs 2" /dev/null \
        >tty.txt 2>&1 </dev/null
    check 'grep -q "epoch 2/2 \[=*\] 7/7 loss [0-9.]* [0-9]* samples/s ETA" tty.txt' \
        "no progress bar on a terminal: $(head -c 400 tty.txt)"
fi

# the target in another column, mse on float targets, and .npy pairs
awk -F, -v OFS=, '{ t = $65; $65 = ""; print t, substr($0, 1, length($0) - 1) }' train.csv \
    >first.csv
expect_ok train mlp.onnx --data first.csv --target-column 0 --loss ce --epochs 1
expect_ok init --layers 2,8,1 --seed 1 -o reg.onnx
awk 'BEGIN { srand(1); for (i = 0; i < 64; i++) { a = rand(); b = rand()
             printf "%.4f,%.4f,%.4f\n", a, b, 2 * a - b } }' >reg.csv
expect_ok train reg.onnx --data reg.csv --loss mse --optimizer adam --lr 0.05 --epochs 30 \
    --batch-size 16 --json
first=$(printf '%s\n' "$out" | grep -m1 train_loss | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
last=$(printf '%s\n' "$out" | grep train_loss | tail -n 1 | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
check 'awk -v a="$first" -v b="$last" "BEGIN { exit !(b < 0.2 * a) }"' \
    "mse loss did not fall: $first -> $last"
write_npy X.npy '<f4' '(4, 2)' 0000803f000000000000000000000000000000000000803f0000803f0000803f
write_npy y.npy '<i8' '(4,)' 0100000000000000000000000000000000000000000000000100000000000000
write_npy y5.npy '<i8' '(4,)' 0100000000000000000000000000000000000000000000000500000000000000
expect_ok init --layers 2,4,2 --seed 1 -o two.onnx
expect_ok train two.onnx --data X.npy --targets y.npy --loss ce --epochs 3 --batch-size 2
expect_fail 1 "y5.npy: element [3]: label 5 is out of range" \
    train two.onnx --data X.npy --targets y5.npy --loss ce
expect_fail 1 "X.npy: features in a tensor file need their targets" \
    train two.onnx --data X.npy --loss ce

# ---- exact resume -------------------------------------------------------------------------
# 200 samples in batches of 32: 7 steps per epoch (the last of 8 samples). Dropout and shuffle
# on. Straight: 3 epochs = 21 steps, with checkpoints at every step.
common=(train drop.onnx --data train.csv --loss ce --optimizer adam --lr 0.01 --shuffle
        --seed 11 --json)
expect_ok "${common[@]}" --epochs 3 --checkpoint-dir straight --checkpoint-every 1 --keep 0 \
    -o straight.onnx
printf '%s\n' "$out" >straight.json
check '[ "$(ls straight | wc -l)" -eq 21 ]' "--keep 0 kept $(ls straight | wc -l) of 21"
# Stopped: 2 epochs with a checkpoint every 5 steps (5, 7, 10, 14), then resumed from the end
# of epoch 1 (step 7) and from the middle of epoch 2 (step 10) for the rest of 3 epochs.
expect_ok "${common[@]}" --epochs 2 --checkpoint-dir stopped --checkpoint-every 5 --keep 0
check '[ "$(ls stopped | tr "\n" " ")" = "ckpt-000005.zip ckpt-000007.zip ckpt-000010.zip ckpt-000014.zip " ]' \
    "checkpoints of the stopped run: $(ls stopped | tr '\n' ' ')"
for k in 7 10; do
    expect_ok "${common[@]}" --epochs 3 --resume "stopped/ckpt-0000$(printf %02d $k).zip" \
        -o "resumed$k.onnx"
    printf '%s\n' "$out" >"resumed$k.json"
    steps_from straight.json $((k + 1)) >want.txt
    steps_from "resumed$k.json" 0 >got.txt
    check '[ "$(wc -l <want.txt)" -eq $((21 - k)) ] && cmp -s want.txt got.txt' \
        "resume from step $k: the losses differ: $(diff want.txt got.txt | head -n 4)"
    check 'cmp -s straight.onnx resumed$k.onnx' "resume from step $k: the weights differ"
done
# the checkpoint of the same step is the same model
expect_ok export stopped/ckpt-000014.zip -o s14.onnx
expect_ok export straight/ckpt-000014.zip -o t14.onnx
check 'cmp -s s14.onnx t14.onnx' "the models at step 14 differ between the two runs"
# --resume DIR takes the newest checkpoint of the folder
expect_ok "${common[@]}" --epochs 3 --resume stopped -o resumed_dir.onnx
check 'cmp -s straight.onnx resumed_dir.onnx' "--resume DIR: the weights differ"

# ---- onyx info and onyx export of a checkpoint --------------------------------------------
expect_ok info straight/ckpt-000010.zip
check '[[ "$out" == *"step: 10"* && "$out" == *"epoch: 1 finished, 96 samples into epoch 2"* &&
         "$out" == *"optimizer: adam, lr 0.01"* && "$out" == *"loss: ce"* &&
         "$out" == *"last loss: "* ]]' "onyx info CKPT.zip: $out"
expect_ok info straight/ckpt-000010.zip --json
printf '%s\n' "$out" >info.json
check '[ "$(json_field info.json step)" = 10 ] && [ "$(json_field info.json epoch)" = 1 ] &&
       [ "$(json_field info.json position)" = 96 ] && [ "$(json_field info.json optimizer)" = "\"adam\"" ]' \
    "onyx info --json CKPT.zip: $out"
# the model of the last checkpoint gives the same outputs as the trainer's export
expect_ok export straight/ckpt-000021.zip -o exported.onnx
expect_ok run straight.onnx -i input=val_x.csv -o out_train
expect_ok run exported.onnx -i input=val_x.csv -o out_ckpt
check 'cmp -s out_train/logits.npy out_ckpt/logits.npy' \
    "onyx export of the last checkpoint and the trainer's -o export give different outputs"
expect_fail 2 "missing -o" export straight/ckpt-000021.zip
expect_fail 2 "missing CKPT.zip" export -o x.onnx
expect_fail 1 "nothere.zip" export nothere.zip -o x.onnx

# ---- kill -9 during training with a checkpoint at every step ------------------------------
"$onyx" "${common[@]}" --epochs 100000 --checkpoint-dir killed --checkpoint-every 1 \
    >killed.json 2>killed.err &
pid=$!
wait_lines killed.json 30
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
last=$(ls killed/ckpt-*.zip 2>/dev/null | sort | tail -n 1)
# --keep 3, plus one when the kill came between a checkpoint's rename and the removal of the
# oldest
check '[ -n "$last" ] && [ "$(ls killed/*.zip | wc -l)" -le 4 ]' \
    "kill -9: checkpoints left: $(ls killed)"
expect_ok info "$last" --json
printf '%s\n' "$out" >kinfo.json
kstep=$(json_field kinfo.json step)
kepoch=$(json_field kinfo.json epoch)
expect_ok "${common[@]}" --epochs $((kepoch + 2)) --resume "$last" --checkpoint-dir killed
printf '%s\n' "$out" >kresumed.json
check '[ "$(steps_from kresumed.json 0 | head -n 1 | cut -d" " -f1)" = $((kstep + 1)) ]' \
    "the resume after kill -9 did not continue at step $((kstep + 1))"
# and the losses are those of a run that was never killed
expect_ok "${common[@]}" --epochs $((kepoch + 2))
printf '%s\n' "$out" >knever.json
steps_from knever.json $((kstep + 1)) >want.txt
steps_from kresumed.json 0 >got.txt
check 'cmp -s want.txt got.txt' "resume after kill -9: the losses differ from an unkilled run"

# ---- Ctrl-C: the current step ends, a checkpoint is written, exit 130 ---------------------
# The whole training split in batches of one sample (1437 steps per epoch), so that the signal
# most likely comes in the middle of an epoch rather than while its closing checkpoint is
# written (either way it must stop cleanly and resume exactly).
common=(train drop.onnx --data "$data/digits_train.csv" --loss ce --optimizer adam --lr 0.01
        --shuffle --seed 11 --json --batch-size 1)
"$onyx" "${common[@]}" --epochs 100000 --checkpoint-dir interrupted >int.json 2>int.err &
pid=$!
wait_lines int.json 30
kill -INT "$pid"
wait "$pid"
rc=$?
check '[ "$rc" -eq 130 ]' "Ctrl-C: exit status $rc, expected 130"
check '[ "$(wc -l <int.err)" -eq 1 ] && grep -q "^onyx train: interrupted after step [0-9]* .*checkpoint interrupted/ckpt-[0-9]*.zip" int.err' \
    "Ctrl-C message: $(cat int.err)"
istep=$(steps_from int.json 0 | tail -n 1 | cut -d' ' -f1)
ickpt=interrupted/ckpt-$(printf %06d "$istep").zip
check '[ -f "$ickpt" ]' "Ctrl-C after step $istep: no $ickpt in $(ls interrupted)"
expect_ok info "$ickpt" --json
printf '%s\n' "$out" >iinfo.json
iepoch=$(json_field iinfo.json epoch)
expect_ok "${common[@]}" --epochs $((iepoch + 1)) --resume "$ickpt" -o iresumed.onnx
steps_from <(printf '%s\n' "$out") 0 >got.txt
expect_ok "${common[@]}" --epochs $((iepoch + 1)) -o inever.onnx
steps_from <(printf '%s\n' "$out") $((istep + 1)) >want.txt
check 'cmp -s want.txt got.txt && cmp -s iresumed.onnx inever.onnx' \
    "resume after Ctrl-C at step $istep: not the same as an uninterrupted run"

# ---- a loss that becomes NaN stops training; the last good checkpoint stays ---------------
expect_fail 1 "step 2: the loss is nan" train mlp.onnx --data train.csv --loss ce \
    --optimizer sgd --lr 1e30 --epochs 3 --checkpoint-dir nan --checkpoint-every 1
check '[[ "$err" == *"the last checkpoint is nan/ckpt-000001.zip"* ]]' \
    "the NaN message does not name the last checkpoint: $err"
expect_ok info nan/ckpt-000001.zip
expect_ok export nan/ckpt-000001.zip -o nan1.onnx
expect_ok run nan1.onnx -i input=val_x.csv

# ---- bad input: one line each, non-zero status --------------------------------------------
sed '5s/^0,/abc,/' train.csv >nonnum.csv
sed '7s/,[^,]*$//' train.csv >ragged.csv
sed '9s/,[^,]*$/,10/' train.csv >label.csv
sed '4s/^0,/nan,/' train.csv >nan.csv
sed '6s/^0,/inf,/' train.csv >inf.csv
sed '3s/,[^,]*$/,2.5/' train.csv >frac.csv
cut -d, -f2- train.csv >narrow.csv
expect_fail 1 "nonnum.csv:5: column 1: \"abc\" is not a number" \
    train mlp.onnx --data nonnum.csv --loss ce
expect_fail 1 "ragged.csv:7: 64 fields, expected 65 as on line 1" \
    train mlp.onnx --data ragged.csv --loss ce
expect_fail 1 "label.csv:9: column 65: label 10 is out of range (output \"logits\" has 10 classes" \
    train mlp.onnx --data label.csv --loss ce
expect_fail 1 "label.csv:9: column 65: label 10 is out of range" \
    train mlp.onnx --data train.csv --val label.csv --loss nll
expect_fail 1 "narrow.csv:1: 63 features (64 fields, the target in column 64), but input \"input\" [batch,64] takes 64" \
    train mlp.onnx --data narrow.csv --loss ce
expect_fail 1 "nan.csv:4: column 1: nan is not a finite" train mlp.onnx --data nan.csv --loss ce
expect_fail 1 "inf.csv:6: column 1: inf is not a finite" train mlp.onnx --data inf.csv --loss ce
expect_fail 1 "frac.csv:3: column 65: label 2.5 is not a class index" \
    train mlp.onnx --data frac.csv --loss ce
expect_fail 1 "1 target value(s) per sample, but output \"logits\" gives 10" \
    train mlp.onnx --data train.csv --loss mse
expect_fail 1 "missing.csv: cannot open" train mlp.onnx --data missing.csv --loss ce
expect_fail 1 "missing.onnx" train missing.onnx --data train.csv --loss ce
expect_fail 2 "unknown option --bogus" train mlp.onnx --data train.csv --loss ce --bogus
expect_fail 2 "missing --loss" train mlp.onnx --data train.csv
expect_fail 2 "missing --data" train mlp.onnx --loss ce
expect_fail 2 "--loss must be" train mlp.onnx --data train.csv --loss hinge
expect_fail 2 "--optimizer must be" train mlp.onnx --data train.csv --loss ce --optimizer lbfgs
expect_fail 2 "--lr must be" train mlp.onnx --data train.csv --loss ce --lr -1
expect_fail 2 "--batch-size must be" train mlp.onnx --data train.csv --loss ce --batch-size 0
expect_fail 2 "--epochs must be" train mlp.onnx --data train.csv --loss ce --epochs x
expect_fail 2 "--checkpoint-every needs --checkpoint-dir" \
    train mlp.onnx --data train.csv --loss ce --checkpoint-every 5
expect_fail 2 "--nesterov needs --momentum" train mlp.onnx --data train.csv --loss ce --nesterov
expect_fail 1 "no batch of 500 with --drop-last" \
    train mlp.onnx --data train.csv --loss ce --batch-size 500 --drop-last
# corrupt, truncated and foreign checkpoints
echo "not a zip" >garbage.zip
head -c 2000 straight/ckpt-000021.zip >truncated.zip
cp straight/ckpt-000021.zip flipped.zip
printf '\xff\xff\xff\xff' | dd of=flipped.zip bs=1 seek=200 conv=notrunc 2>/dev/null
expect_fail 1 "--resume: garbage.zip" train mlp.onnx --data train.csv --loss ce --resume garbage.zip
expect_fail 1 "--resume: truncated.zip" \
    train mlp.onnx --data train.csv --loss ce --resume truncated.zip
expect_fail 1 "--resume: flipped.zip" train mlp.onnx --data train.csv --loss ce --resume flipped.zip
expect_fail 1 "nothere.zip" train mlp.onnx --data train.csv --loss ce --resume nothere.zip
expect_fail 1 "--resume" train two.onnx --data X.npy --targets y.npy --loss ce \
    --resume straight/ckpt-000021.zip
expect_fail 1 "--loss mse, but" train mlp.onnx --data train.csv --loss mse \
    --resume straight/ckpt-000021.zip
expect_fail 1 "truncated.zip" info truncated.zip
expect_fail 1 "flipped.zip" export flipped.zip -o x.onnx
check '[ ! -e x.onnx ]' "a failed export left x.onnx behind"

# --add-dropout: a model exported without Dropout (PyTorch eval export) gets Dropout after each
# hidden activation; the nodes are kept in the export and are off in inference mode.
expect_ok train "$ONYX_SOURCE_DIR/tests/fixtures/torch_mlp_eval/model.onnx" --data train.csv \
    --loss ce --epochs 1 --add-dropout 0.2 -o added.onnx
run_cmd info added.onnx
check 'printf "%s" "$out" | grep -q "Dropout 2"' "--add-dropout: the export lacks the 2 Dropout nodes: $out"
expect_fail 2 "--add-dropout" train mlp.onnx --data train.csv --loss ce --add-dropout 1.5

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
