#!/usr/bin/env bash
# House rules (STYLE.md "Strings and memory", DESIGN.md section 7): no unsafe
# string functions and no shell anywhere; lib/ never exits or prints to stdout
# (_exit in a forked child is fine; abort on allocation failure is strbuf policy).
. "$TEST_SRCDIR/tests/lib/test-lib.sh"

src=$TEST_SRCDIR
[ -d "$src/cmd" ] && [ -d "$src/lib" ] || fail "no cmd/ or lib/ under $src"

# Lines of C without // comments and string literals, so a message that says
# "sprintf(" or a comment about system() does not count; prefixed file:line.
code_lines() {
	find "$@" -name '*.[ch]' -print0 | sort -z | xargs -0 awk '
		FNR == 1 { in_comment = 0 }
		{
			line = $0
			if (in_comment) {
				if (index(line, "*/") == 0) next
				line = substr(line, index(line, "*/") + 2); in_comment = 0
			}
			gsub(/"([^"\\]|\\.)*"/, "\"\"", line)
			gsub(/\/\*.*\*\//, "", line)
			if (index(line, "/*")) { line = substr(line, 1, index(line, "/*") - 1); in_comment = 1 }
			sub(/\/\/.*/, "", line)
			printf "%s:%d:%s\n", FILENAME, FNR, line
		}'
}

hits=$(code_lines "$src/cmd" "$src/lib" |
	grep -E ':[0-9]+:.*(^|[^_[:alnum:].>])(strcpy|strcat|sprintf|vsprintf|gets|strtok|system|popen)[[:space:]]*\(' |
	grep -vE 'banned\.h:')
[ -z "$hits" ] || fail "banned calls (use strbuf, proc_ spawn without a shell):
$hits"

hits=$(code_lines "$src/lib" |
	grep -E ':[0-9]+:.*(^|[^_[:alnum:].>])(exit|printf|vprintf|puts|putchar)[[:space:]]*\(|:[0-9]+:.*(^|[^_[:alnum:]])stdout([^_[:alnum:]]|$)')
[ -z "$hits" ] || fail "lib/ must return errors to cmd/, not exit or print to stdout:
$hits"

# The checks above must be able to fail.
mkdir -p bad/lib && printf 'void f(char *d) {\n\tstrcpy(d, "x"); /* sprintf( */\n\texit(1);\n}\n' >bad/lib/x.c
[ "$(code_lines bad | grep -cE '(^|[^_[:alnum:].>])(strcpy|exit)[[:space:]]*\(')" = 2 ] ||
	fail "the scanner missed planted banned calls"
[ "$(code_lines bad | grep -cE 'sprintf')" = 0 ] || fail "the scanner counted a comment"

test_done
