#!/usr/bin/env bash
# The command line itself: --version, usage errors, help.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl

expect_exit 0 opsctl --version
expect_grep '^opsctl 0\.1\.0$' out
for lib in libpq libcurl cJSON zlib OpenSSL; do
	expect_grep "^ *${lib}[ :].*[0-9]+\.[0-9]+" out
done
expect_no_grep . err

# No command: usage on stderr, exit 2, nothing on stdout.
expect_exit 2 opsctl
expect_grep '[Uu]sage' err
expect_no_grep . out

expect_exit 2 opsctl helth
expect_grep "did you mean 'health'" err
expect_grep "^opsctl: error: .*'helth'" err

expect_exit 2 opsctl --bogus
expect_grep "^opsctl: error: .*'?--bogus'?" err

expect_exit 2 opsctl health --bogus
expect_grep "^opsctl: error: .*--bogus" err

expect_exit 0 opsctl help
expect_grep '^ +health ' out

# -h and help CMD print the command's usage to stdout, identically.
expect_exit 0 opsctl health -h
expect_grep '[Uu]sage: opsctl .*health' out
expect_grep '--wait' out
expect_grep '--nagios' out
mv out health-h.out
expect_exit 0 opsctl help health
expect_file_same health-h.out out
expect_exit 0 opsctl health --help
expect_file_same health-h.out out

expect_exit 2 opsctl help nosuchcommand
expect_grep "nosuchcommand" err

test_done
