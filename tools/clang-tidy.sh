#!/usr/bin/env bash
# clang-tidy.sh - clang-tidy 14 with the project's .clang-tidy (every warning is an error) over
# the compile database of build/ci (configure it first: cmake --preset ci).
#   tools/clang-tidy.sh                 every file of src/ (what tools/test.sh runs; ~3 min of
#                                       2 free cores, ~6 min of CPU)
#   tools/clang-tidy.sh --changed [REF] only the src/ files changed since the merge-base of HEAD
#                                       and REF (default origin/main, else main, else HEAD~1;
#                                       on REF itself, the last commit), plus uncommitted
#                                       changes; a changed header brings in the .cc of the same
#                                       name (tools/test.sh --quick)
#   tools/clang-tidy.sh --cached        every file of src/ whose clean verdict is not cached
#                                       (tools/test.sh): a file's key is the hash of the file
#                                       preprocessed with its comments, its flags, clang-tidy's
#                                       version and .clang-tidy (tools/clang_tidy_cache.py); the
#                                       cache is ~/.cache/vm-import/clang-tidy
# Exit status: 0 when clean, 1 on any finding.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=build/ci
[ -f "$BUILD/compile_commands.json" ] || { echo "clang-tidy.sh: run cmake --preset ci first" >&2; exit 2; }
RUN=$(command -v run-clang-tidy-14 || command -v run-clang-tidy) \
  || { echo "clang-tidy.sh: run-clang-tidy not found (Debian package clang-tidy)" >&2; exit 2; }

files=("$ROOT/src/")  # run-clang-tidy takes regular expressions over the database's file names
if [ "${1:-}" = --changed ]; then
  ref=${2:-}
  if [ -z "$ref" ]; then
    for r in origin/main main HEAD~1; do
      git rev-parse -q --verify "$r^{commit}" >/dev/null && { ref=$r; break; }
    done
  fi
  base=$(git merge-base HEAD "$ref")
  # On the reference branch itself (a CI run of main): the files of the last commit.
  [ "$base" != "$(git rev-parse HEAD)" ] || base=$(git rev-parse -q --verify HEAD~1 || echo "$base")
  mapfile -t changed < <({ git diff --name-only "$base" -- src; git ls-files -o --exclude-standard src; } \
    | sed -E 's/\.h$/.cc/' | sort -u)
  files=()
  for f in "${changed[@]}"; do
    [[ "$f" == *.cc && -f "$f" ]] && files+=("^$ROOT/$f\$")
  done
  echo "clang-tidy: ${#files[@]} changed file(s) since $(git rev-parse --short "$base") ($ref)"
  [ ${#files[@]} -gt 0 ] || exit 0
fi
CACHE=
if [ "${1:-}" = --cached ]; then
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/clang-tidy
  mapfile -t missed < <(python3 tools/clang_tidy_cache.py misses "$BUILD" "$ROOT" "$CACHE")
  files=()
  for f in "${missed[@]}"; do files+=("^$f\$"); done
  echo "clang-tidy: ${#files[@]} of src/'s files not seen before (the others' clean verdicts are cached)"
  [ ${#files[@]} -gt 0 ] || { echo "clang-tidy: clean"; exit 0; }
fi

# Keep the findings and drop run-clang-tidy's echo of each command and clang's counts.
set +e
nice "$RUN" -p "$BUILD" -j "${TIDY_JOBS:-2}" -quiet "${files[@]}" 2>&1 \
  | grep -v -E '^(clang-tidy(-14)? |[0-9]+ warnings? generated\.|Suppressed [0-9]+ warnings|Use -header-filter)'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" != 0 ] || [ -z "$CACHE" ] || python3 tools/clang_tidy_cache.py commit "$CACHE"
[ "$rc" = 0 ] && echo "clang-tidy: clean" || echo "clang-tidy: findings above (exit $rc)" >&2
exit "$rc"
