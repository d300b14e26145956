# `sd35 golden` and `sd35 make-random-checkpoint`: the real binary on the tiny fixture set.

# Every implemented stage on tiny-a must pass (exit 0); the per-case table goes to the log.
add_test(NAME golden_tiny_a COMMAND sd35 golden ${CMAKE_SOURCE_DIR}/tests/data/tiny-a)
set_tests_properties(golden_tiny_a PROPERTIES LABELS model TIMEOUT 600)

# The command must be able to fail: a copy of tiny-a whose goldens_mmdit.safetensors has its
# last float (the end of the data section, whichever case tensor comes last; every tensor in
# the file is either an input or a golden of some case) overwritten with 1000.0f must give
# exit 1 (a FAIL line), not 0 and not the "could not check" code 2. The other files are
# symlinked, so the copy costs ~1 MB. POSIX sh only: printf with octal escapes and dd.
add_test(NAME golden_detects_perturbed_golden
         COMMAND sh -c "set -u
d=$(mktemp -d) || exit 3
trap 'rm -rf \"$d\"' EXIT
for f in \"$1\"/*; do ln -s \"$f\" \"$d/\"; done
rm \"$d/goldens_mmdit.safetensors\"
cp \"$1/goldens_mmdit.safetensors\" \"$d/\" || exit 3
size=$(wc -c < \"$d/goldens_mmdit.safetensors\")
printf '\\000\\000\\172\\104' | dd of=\"$d/goldens_mmdit.safetensors\" bs=1 seek=$((size - 4)) conv=notrunc 2>/dev/null || exit 3
\"$2\" golden \"$d\" --stage mmdit
rc=$?
echo \"exit code $rc (expected 1)\"
[ $rc -eq 1 ]"
                 golden_negative ${CMAKE_SOURCE_DIR}/tests/data/tiny-a $<TARGET_FILE:sd35>)
set_tests_properties(golden_detects_perturbed_golden PROPERTIES LABELS model TIMEOUT 600
                     PASS_REGULAR_EXPRESSION "FAIL.*exit code 1 \\(expected 1\\)")

# A set directory that is not one must give exit 2 and a message, never a crash.
add_test(NAME golden_rejects_bad_set_dir
         COMMAND sh -c "\"$0\" golden \"$1\"; rc=$?; echo \"exit code $rc\"; [ $rc -eq 2 ]"
                 $<TARGET_FILE:sd35> ${CMAKE_SOURCE_DIR}/tests/data/no-such-set)
set_tests_properties(golden_rejects_bad_set_dir PROPERTIES LABELS model
                     PASS_REGULAR_EXPRESSION "not a directory.*exit code 2")

# make-random-checkpoint: a depth-2 file with the real SAI key names (MMDiT + full-size VAE,
# ~210 MB) that `sd35 inspect` accepts with the expected derived config.
add_test(NAME make_random_checkpoint_depth2
         COMMAND sh -c "set -e
f=\"$1/random_depth2_test.safetensors\"
trap 'rm -f \"$f\"' EXIT
\"$0\" make-random-checkpoint \"$f\" --depth 2 --with-vae --seed 7
\"$0\" inspect \"$f\""
                 $<TARGET_FILE:sd35> ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(make_random_checkpoint_depth2 PROPERTIES LABELS unit TIMEOUT 300
                     PASS_REGULAR_EXPRESSION
                     "depth 2, hidden 128, heads 2 x 64, patch 2.*pos_embed 384x384, adm_in 2048, context_dim 4096.*dual-attention layers \\[0, 1\\].*usable: mmdit, vae")
