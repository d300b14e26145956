# Engine end to end on tiny-a (goldens_pipeline), determinism, progress, cancel, errors.
sd35_add_test(test_engine LABEL model SOURCES tests/models/test_engine.cpp)

# `sd35 generate` with the tiny model writes a PNG: signature and IHDR size checked with od.
add_test(NAME generate_tiny_a_writes_png
         COMMAND sh -c "set -e
d=$(mktemp -d)
trap 'rm -rf \"$d\"' EXIT
\"$0\" generate \"$1/model.safetensors\" --clip-l \"$1/clip_l.safetensors\" --clip-g \"$1/clip_g.safetensors\" --t5xxl \"$1/t5xxl.safetensors\" --prompt 'a photo of a cat' --width 128 --height 64 --steps 2 --sampler euler --seed 42 --compute f32 -o \"$d/out.png\"
sig=$(od -An -tx1 -N8 \"$d/out.png\" | tr -d ' \\n')
size=$(od -An -tu1 -j16 -N8 \"$d/out.png\" | tr -s ' ')
echo \"signature $sig size$size\"
\"$0\" generate \"$1/model.safetensors\" --clip-l \"$1/clip_l.safetensors\" --clip-g \"$1/clip_g.safetensors\" --t5xxl \"$1/t5xxl.safetensors\" --prompt x --steps 1 --batch 2 --width 64 --height 64 --seed 1 -o \"$d/b.png\"
ls \"$d\""
                 $<TARGET_FILE:sd35> ${CMAKE_SOURCE_DIR}/tests/data/tiny-a)
set_tests_properties(generate_tiny_a_writes_png PROPERTIES LABELS model TIMEOUT 300
                     PASS_REGULAR_EXPRESSION
                     "signature 89504e470d0a1a0a size 0 0 0 128 0 0 0 64.*b_00001.png.*b_00002.png")

# Bad sizes are refused before loading anything, with exit code 1 and a message.
add_test(NAME generate_rejects_bad_size
         COMMAND sh -c "\"$0\" generate \"$1/model.safetensors\" --prompt x --width 100; echo \"exit code $?\""
                 $<TARGET_FILE:sd35> ${CMAKE_SOURCE_DIR}/tests/data/tiny-a)
set_tests_properties(generate_rejects_bad_size PROPERTIES LABELS model
                     PASS_REGULAR_EXPRESSION "multiples of 16.*exit code 1")

# Device placement on a simulated GPU (host memory tagged kCUDA; a backend that rejects host
# tensors): engine and models bit-identical to the CPU path, transfers, memory checks.
sd35_add_test(test_device_placement LABEL model SOURCES tests/models/test_device_placement.cpp)
# Graph capture of the MMDiT forwards (cuda_graphs) on the simulated device.
sd35_add_test(test_captured_forwards LABEL model SOURCES tests/models/test_captured_forwards.cpp)

# `--backend cuda` in a build or on a machine without CUDA fails cleanly (exit 1, a message
# naming CUDA) before loading; where a GPU is usable the tiny model simply runs (exit 0).
add_test(NAME generate_cuda_backend_clear_without_gpu
         COMMAND sh -c "d=$(mktemp -d); \"$0\" generate \"$1/model.safetensors\" --clip-l \"$1/clip_l.safetensors\" --clip-g \"$1/clip_g.safetensors\" --prompt x --backend cuda --width 64 --height 64 --steps 1 --seed 1 -q -o \"$d/c.png\"; echo \"exit code $?\"; rm -rf \"$d\""
                 $<TARGET_FILE:sd35> ${CMAKE_SOURCE_DIR}/tests/data/tiny-a)
set_tests_properties(generate_cuda_backend_clear_without_gpu PROPERTIES LABELS model TIMEOUT 300
                     PASS_REGULAR_EXPRESSION "(CUDA.*exit code 1)|(exit code 0)")
