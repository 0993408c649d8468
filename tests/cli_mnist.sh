#!/usr/bin/env bash
# lowbit mnist as a user meets it: --help, bad options refused before any
# work with no file left, a damaged data folder and a damaged network file
# refused naming them, a short XNOR run whose --json parses, its eval where
# the packed XNOR-popcount path gives the float forward's predictions and
# logits exactly, and the same trained bytes for 1 and 2 threads.
set -u
NEEDS="MNIST"
MNIST=../shared/data/mnist/train-images-idx3-ubyte
. "$(dirname "$0")/common_cli.sh"

expect 0 "usage: lowbit mnist train" -- "$LOWBIT" mnist --help
expect 0 "usage: lowbit mnist train" -- "$LOWBIT" mnist train --help
expect 0 "usage: lowbit mnist train" -- "$LOWBIT" mnist eval --help
expect 0 "mnist" -- "$LOWBIT" --help
expect 2 "expected train or eval" -- "$LOWBIT" mnist
expect 2 "unknown subcommand 'fit'" -- "$LOWBIT" mnist fit
expect 2 "missing -o" -- "$LOWBIT" mnist train --model mlp
expect 2 "unknown MNIST mode 'ternary'" -- "$LOWBIT" mnist train --mode ternary -o "$TMP/x.gguf"
expect 2 "unknown MNIST model 'resnet'" -- "$LOWBIT" mnist train --model resnet -o "$TMP/x.gguf"
expect 2 "--stochastic is BinaryConnect's" -- "$LOWBIT" mnist train --mode xnor --stochastic -o "$TMP/x.gguf"
expect 2 "--fp-ends 'maybe'" -- "$LOWBIT" mnist train --fp-ends maybe -o "$TMP/x.gguf"
expect 2 "--epochs" -- "$LOWBIT" mnist train --epochs 0 -o "$TMP/x.gguf"
expect 1 "the training file has only 8000 images" -- "$LOWBIT" mnist train --val 8000 -o "$TMP/x.gguf"
mkdir -p "$TMP/bad"
head -c 1000 ../shared/data/mnist/train-images-idx3-ubyte > "$TMP/bad/train-images-idx3-ubyte"
cp ../shared/data/mnist/train-labels-idx1-ubyte "$TMP/bad/"
expect 1 "truncated" -- "$LOWBIT" mnist train --data "$TMP/bad" -o "$TMP/x.gguf"
expect 1 "nowhere/train-images-idx3-ubyte" -- "$LOWBIT" mnist train --data "$TMP/nowhere" -o "$TMP/x.gguf"
if [ -e "$TMP/x.gguf" ]; then fail "a refused train left $TMP/x.gguf"; else ok; fi

# a short XNOR run (2,000 images, 2 epochs, 64 wide): JSON, then its eval
"$LOWBIT" mnist train --model mlp --mode xnor --hidden 64 --epochs 2 --train-limit 2000 --threads 1 --json \
    -o "$TMP/x1.gguf" > "$TMP/t.json" 2> "$TMP/t.err"
json "$TMP/t.json" "j['mode'] == 'xnor' and j['fp_ends'] and j['train_images'] == 2000 and j['val_images'] == 1000 and len(j['log']) == 2 and j['log'][-1]['epoch'] == 2 and j['val_acc'] > 0.7"
expect 0 "epoch   2/2" -- "$LOWBIT" mnist train --model mlp --mode xnor --hidden 64 --epochs 2 --train-limit 2000 --threads 2 -o "$TMP/x2.gguf"
if cmp -s "$TMP/x1.gguf" "$TMP/x2.gguf"; then ok; else fail "1 and 2 threads trained different weights"; fi
"$LOWBIT" mnist eval "$TMP/x1.gguf" --split val --repeat 2 --json > "$TMP/e.json" 2> "$TMP/e.err"
json "$TMP/e.json" "j['images'] == 1000 and j['xnor_layers'] == 2 and j['accuracy'] == j['accuracy_packed'] and j['prediction_agreement'] == 1000 and j['max_logit_diff'] == 0 and abs(j['accuracy'] - $(python3 -c "import json; print(json.load(open('$TMP/t.json'))['val_acc'])")) < 1e-9 and j['images_per_second_packed'] > 0"
expect 0 "by XNOR-popcount" -- "$LOWBIT" mnist eval "$TMP/x1.gguf" --repeat 1
# damaged and foreign files
head -c 5000 "$TMP/x1.gguf" > "$TMP/cut.gguf"
expect 1 "cut.gguf" -- "$LOWBIT" mnist eval "$TMP/cut.gguf"
expect 1 "not an MNIST network" -- "$LOWBIT" mnist eval ../shared/data/vocab/ggml-vocab-llama-spm.gguf
expect 2 "expected one FILE" -- "$LOWBIT" mnist eval
expect 2 "--split 'train'" -- "$LOWBIT" mnist eval "$TMP/x1.gguf" --split train

finish cli_mnist
