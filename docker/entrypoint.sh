#!/bin/sh
# Image entry point: `tagfold` subcommands by default, plus a few container conveniences.
#   <image> train --stage 2 --input wave ...   -> tagfold train ...
#   <image> bench [pytest args]                -> pytest benchmarks (real shared data at /shared)
#   <image> test [pytest args]                 -> pytest --benchmark-disable (default: tests benchmarks)
#   <image> shell | bash | sh                  -> an interactive shell
set -eu
cmd="${1:---help}"
[ "$#" -gt 0 ] && shift
# tagfold commands run in the working directory (/out in the image); the test suites from the
# project folder, which is where their relative paths point.
case "$cmd" in
  bench) cd /opt/tagfold && exec python -m pytest benchmarks --benchmark-only "$@" ;;
  test)  [ "$#" -gt 0 ] || set -- tests benchmarks
         cd /opt/tagfold && exec python -m pytest -q --benchmark-disable "$@" ;;
  shell|bash) exec bash "$@" ;;
  sh)    exec sh "$@" ;;
  *)     exec tagfold "$cmd" "$@" ;;
esac
