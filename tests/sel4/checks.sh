# The checks the seL4 tests share (sourced by boot-test and mte-test):
# `check NAME COMMAND...` counts a pass or a failure, and the helpers read
# the serial log at $log. The caller sets $log and $prefix (its name in the
# output) and ends with `summary`.
passed=0
failed=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "$prefix: ok: $name"
    else
        failed=$((failed + 1))
        echo "$prefix: FAILED: $name" >&2
    fi
}
has() { grep -qF -- "$1" "$log"; }
line() { grep -F -- "$1" "$log" | tail -n 1; }
value() { # value LINE KEY: the number after KEY= in LINE
    sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"
}
# number LINE KEY: as value, or -1 where LINE has no KEY=, so arithmetic
# never breaks and a missing figure never equals another.
number() {
    local v
    v=$(value "$1" "$2")
    echo "${v:--1}"
}
# The line number of the first line with TEXT (0 if none).
first_line() { grep -nF -- "$1" "$log" | head -n 1 | cut -d: -f1 | grep . || echo 0; }
summary() {
    if [ "$log" = /dev/null ]; then
        echo "$prefix: $passed passed, $failed failed"
    else
        echo "$prefix: $passed passed, $failed failed (serial log: $log)"
    fi
    [ "$failed" = 0 ]
}
