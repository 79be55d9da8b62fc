#!/usr/bin/env bash
# Mutation testing of one crate (or some of its files) with cargo-mutants: every mutant is
# an operator or return value changed in our code; a mutant the tests do not catch is a
# change of behaviour nobody would notice. Results: bench/mutants/README.md.
#
#   bench/mutants/run.sh nc-math                          # the whole crate
#   bench/mutants/run.sh nc-math crates/nc-math/src/metrics/decisions.rs ...
#   bench/mutants/run.sh nc-math --iterate                # retest only last run's survivors
#
# Needs `cargo install cargo-mutants` (27.x). Settings shared by every run (test command,
# excluded test files) are in .cargo/mutants.toml. Mutants build in scratch copies of the
# tree, each with its own target directory (the dependencies build once per run, about 3
# minutes); the report lands in bench/out/mutants/<crate>/mutants.out.
set -euo pipefail
cd "$(dirname "$0")/../.."
crate=${1:?usage: run.sh CRATE [FILE...] [--iterate]}
shift
args=()
for arg in "$@"; do
    case $arg in
        --*) args+=("$arg") ;;
        *) args+=(-f "$arg") ;;
    esac
done
out=${MUTANTS_OUT:-bench/out/mutants/$crate}
mkdir -p "$out"

# No shared CARGO_TARGET_DIR: with -j 2 the two scratch trees would write the same test
# binaries into it and run each other's mutants. -j 2: two mutants build and test at once,
# which kept both cores of the 2-core machine busy through the link steps.
cargo mutants -p "$crate" -j "${MUTANTS_JOBS:-2}" --timeout 120 -o "$out" "${args[@]}"
