#!/usr/bin/env bash
# The man pages and completions against the binary (STYLE.md "Docs"):
#  (a) each man/opsctl-CMD.1 SYNOPSIS is the usage of 'opsctl CMD -h' (all its
#      lines: 'usage:' and each '   or:', in order) and its OPTIONS hold every
#      option of that -h (and no option -h lacks);
#      opsctl.1 likewise against 'opsctl -h' and GLOBAL OPTIONS;
#  (b) the three completion files know every command and every option, and the
#      bash (and fish) ones offer the [check "NAME"]s and [secret "NAME"]s of
#      the config;
#  (c) every page renders without a groff warning;
#  (d) the completion files parse (bash -n, zsh -n, fish -n);
#  (e) the EXAMPLES marked with '.\" test:' run against a local HTTP server
#      with the exit code they are marked with (markers: man/opsctl-health.1);
#      those marked needs=postgres get a database of their own per page.
. "$TEST_SRCDIR/tests/lib/test-lib.sh"
require_opsctl

man_dir=$TEST_SRCDIR/man
comp_dir=$TEST_SRCDIR/completions
for f in "$man_dir/opsctl.1" "$man_dir/opsctl.conf.5" "$comp_dir/opsctl.bash" \
	"$comp_dir/_opsctl" "$comp_dir/opsctl.fish"; do
	[ -f "$f" ] || fail "missing $f"
done

have_groff=
command -v groff >/dev/null 2>&1 && have_groff=1

# render PAGE: plain text, one paragraph per line where possible. Section
# headings start in column 0, text is indented, a .TP tag is indented 7.
render() {
	if [ -n "$have_groff" ]; then
		GROFF_NO_SGR=1 groff -man -Tascii -P-c -P-b -P-u -rLL=250n "$1" 2>/dev/null
		return
	fi
	# Without groff: a rough reading of the man(7) source that is enough here.
	awk '
	/^\.\\"/ { next }
	/^\.SH / { sub(/^\.SH +/, ""); gsub(/"/, ""); print; next }
	/^\.TP/ { tag = 1; next }
	/^\.(B|I|BR|IR|RB|BI|IB|RI|SS) / { sub(/^\.[A-Z]+ /, ""); gsub(/"/, "") }
	/^\./ { next }
	{
		line = $0
		gsub(/\\f[BIRP]/, "", line); gsub(/\\-/, "-", line); gsub(/\\\(aq/, "\047", line)
		gsub(/\\\(dq/, "\"", line); gsub(/\\e/, "\\", line); gsub(/\\[&:]/, "", line)
		if (tag)
			print ""
		print (tag ? "       " : "              ") line
		tag = 0
	}' "$1"
}

# section TEXT-FILE NAME: the lines of one section.
section() {
	awk -v name="$2" '$0 == name { on = 1; next } /^[A-Z]/ { on = 0 } on' "$1"
}

squeeze() {
	tr '\n' ' ' | tr -s ' \t' '  ' | sed 's/^ //; s/ $//'
}

# The option words of a -h text: -x and --name, one a line; --[no-]name is
# both --name and --no-name.
help_options() {
	grep -E '^    -' "$1" | sed -E 's/^ +//; s/  .*//; s/--\[no-\]([a-zA-Z][-a-zA-Z]*)/--\1, --no-\1/g' |
		grep -oE '(^|[ ,])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ ,]//' | sort -u
}

# word_in WORD FILE: WORD appears as a whole word (dashes count as word).
word_in() {
	grep -qE -- "(^|[^-a-zA-Z0-9_])$1([^-a-zA-Z0-9_]|$)" "$2"
}

# ---- (a) SYNOPSIS and OPTIONS against -h -----------------------------------

# check_page PAGE HELP-FILE OPTIONS-SECTION EXACT
check_page() {
	local page=$1 help=$2 opt_section=$3 exact=$4 name usage synopsis opt
	name=$(basename "$page")
	render "$page" >"rendered-$name"
	# every usage line: 'usage: ...' and the '   or: ...' lines after it
	usage=$(awk '/^usage: / { on = 1; sub(/^usage: /, ""); print; next }
		on && /^   or: / { sub(/^   or: /, ""); print; next }
		{ on = 0 }' "$help" | squeeze)
	[ -n "$usage" ] || fail "$name: no usage line in $help"
	synopsis=$(section "rendered-$name" SYNOPSIS | squeeze)
	TEST_CHECKS=$((TEST_CHECKS + 1))
	if [ "$exact" = 1 ]; then
		[ "$synopsis" = "$usage" ] ||
			fail "$name: SYNOPSIS is not the usage of -h:
    man: $synopsis
    -h:  $usage"
	else
		case $synopsis in
		"$usage"*) ;;
		*) fail "$name: SYNOPSIS does not start with the usage of -h:
    man: $synopsis
    -h:  $usage" ;;
		esac
	fi
	section "rendered-$name" "$opt_section" >"options-$name"
	[ -s "options-$name" ] || fail "$name: no $opt_section section"
	help_options "$help" >"opts-$name"
	[ -s "opts-$name" ] || fail "$name: no options in $help"
	while read -r opt; do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		word_in "$opt" "options-$name" || fail "$name: $opt_section does not describe $opt (it is in -h)"
	done <"opts-$name"
	# ...and documents no option that -h lacks (tags: lines indented 7).
	# A tag starts a paragraph (a blank line before it); one of up to 6
	# characters shares its line with the description, from column 15.
	awk '/^       -/ && prev == "" {
		tag = substr($0, 8)
		if (length($0) > 14 && substr($0, 14, 1) == " " && substr($0, 15, 1) != " ")
			tag = substr($0, 8, 7)
		print tag
	}
	{ prev = $0 }' "options-$name" | grep -oE '(^|[ ,])--?[a-zA-Z][-a-zA-Z0-9]*' | sed 's/^[ ,]//' | sort -u >"tags-$name"
	while read -r opt; do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		case $opt in -h | --help) continue ;; esac
		grep -qxF -- "$opt" "opts-$name" || fail "$name: $opt_section describes $opt, which -h does not know"
	done <"tags-$name"
}

expect_exit 0 opsctl -h
mv out main-h
check_page "$man_dir/opsctl.1" main-h "GLOBAL OPTIONS" 0

expect_exit 0 opsctl help
commands=$(awk '/^commands:/ { on = 1; next } on && /^    [a-z]/ { print $1 } on && /^$/ { exit }' out)
[ -n "$commands" ] || fail "no commands in 'opsctl help'"
echo "$commands" >commands

nr_pages=0
for cmd in $commands; do
	[ "$cmd" = help ] && continue
	[ -f "$man_dir/opsctl-$cmd.1" ] || fail "command '$cmd' has no man page man/opsctl-$cmd.1"
	expect_exit 0 opsctl "$cmd" -h
	mv out "help-$cmd"
done
for page in "$man_dir"/opsctl-*.1; do
	cmd=$(basename "$page" .1)
	cmd=${cmd#opsctl-}
	grep -qxF "$cmd" commands || fail "man/opsctl-$cmd.1 documents '$cmd', which 'opsctl help' does not list"
	check_page "$page" "help-$cmd" OPTIONS 1
	nr_pages=$((nr_pages + 1))
done
[ "$nr_pages" -gt 0 ] || fail "no man/opsctl-CMD.1 pages"

# ---- (b) completions know every command and option -------------------------

# in_completion FILE WORD: the word as that shell's file spells it.
in_completion() {
	local file=$1 word=$2
	case $file:$word in
	*.fish:--*) grep -qE -- "(-l|--long) ${word#--}( |$)" "$file" ;;
	*.fish:-?) grep -qE -- "(-s|--short) ${word#-}( |$)" "$file" ;;
	*.fish:*) grep -qE -- "-a '?([^']* )?$word( |'|$)" "$file" ;;
	*) word_in "$word" "$file" ;;
	esac
}

for comp in "$comp_dir/opsctl.bash" "$comp_dir/_opsctl" "$comp_dir/opsctl.fish"; do
	for word in $commands $(help_options main-h) $(for c in $commands; do
		[ -f "help-$c" ] && help_options "help-$c"
	done); do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		in_completion "$comp" "$word" || fail "$(basename "$comp") does not complete '$word'"
	done
done

mkdir comp && cd comp || fail "cd comp"
cat >opsctl.conf <<'CONF'
[check "api"]
url = http://localhost:8080/actuator/health
  [ Check "data-disk" ]   ; a comment
path = /
[health]
[secret "jwt"]
env = JWT_SECRET
 [ SECRET "db" ]
env = DB_PASSWORD
CONF
printf '[check "other"]\nurl = http://localhost:8081/\n' >other.conf

# bash_complete WORDS...: what the bash completion offers after WORDS ("" = a new word).
bash_complete() {
	bash -c '
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_opsctl 2>/dev/null
		printf "%s\n" "${COMPREPLY[@]}"
	' bash "$comp_dir/opsctl.bash" "$@"
}

# expect_offered WHAT WORD... : WHAT is in the last completion's output (./offered).
expect_offered() {
	local what=$1 w
	shift
	for w in "$@"; do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		grep -qxF -- "$w" offered || {
			show_file offered offered
			fail "$what: '$w' not offered"
		}
	done
}

bash_complete opsctl "" >offered
expect_offered "bash: opsctl <TAB>" $commands
bash_complete opsctl health "" >offered
expect_offered "bash: opsctl health <TAB>" api data-disk memory http://
bash_complete opsctl -c other.conf health "" >offered
expect_offered "bash: opsctl -c other.conf health <TAB>" other
grep -qxF api offered && fail "bash: -c other.conf still offers ./opsctl.conf's checks"
bash_complete opsctl help "" >offered
expect_offered "bash: opsctl help <TAB>" $commands
bash_complete opsctl rotate-secret "" >offered
expect_offered "bash: opsctl rotate-secret <TAB>" jwt db
grep -qxF api offered && fail "bash: rotate-secret offers a [check]"
bash_complete opsctl rotate-secret - >offered
expect_offered "bash: opsctl rotate-secret -<TAB>" $(help_options ../help-rotate-secret)
bash_complete opsctl rotate-secret --list "" >offered
grep -qxF jwt offered && fail "bash: rotate-secret --list offers a NAME"
bash_complete opsctl health --metrics-file oth >offered
expect_offered "bash: --metrics-file <TAB>" other.conf
bash_complete opsctl health - >offered
expect_offered "bash: opsctl health -<TAB>" $(help_options ../help-health)
bash_complete opsctl - >offered
expect_offered "bash: opsctl -<TAB>" $(help_options ../main-h)
mkdir -p db/migrations/rollback
: >db/migrations/007_add_orders.sql
: >db/migrations/rollback/007_add_orders.down.sql
migrate_subs="up down status validate repair new baseline"
bash_complete opsctl migrate "" >offered
expect_offered "bash: opsctl migrate <TAB>" $migrate_subs
bash_complete opsctl -q migrate - >offered
expect_offered "bash: opsctl -q migrate -<TAB>" --to --allow-out-of-order --dir
bash_complete opsctl migrate status - >offered
expect_offered "bash: opsctl migrate status -<TAB>" --exit-code --dir
bash_complete opsctl migrate --dir "" >offered
expect_offered "bash: opsctl migrate --dir <TAB>" db
grep -qxF opsctl.conf offered && fail "bash: migrate --dir offers a file"
bash_complete opsctl migrate --dir db/migrations --to "" >offered
expect_offered "bash: opsctl migrate --dir DIR --to <TAB>" 007
bash_complete opsctl rollback - >offered
expect_offered "bash: opsctl rollback -<TAB>" $(help_options ../help-rollback)
bash_complete opsctl rollback --dir db/migrations --schema "" >offered
expect_offered "bash: opsctl rollback --schema <TAB>" 007
# backup sets: directories with a manifest.json, in ./backups, --dir or [backup] dir
mkdir -p backups/app-20261121T021500Z backups/.tmp-app-20261122T021500Z backups/not-a-set \
	sets/app-20261120T021500Z db/sets/app-20261119T021500Z
: >backups/app-20261121T021500Z/manifest.json
: >backups/.tmp-app-20261122T021500Z/manifest.json
: >sets/app-20261120T021500Z/manifest.json
: >db/sets/app-20261119T021500Z/manifest.json
printf '[backup]\ndir = sets   ; relative to this file\n' >db/backup.conf
backup_subs="create list verify prune upload"
bash_complete opsctl backup "" >offered
expect_offered "bash: opsctl backup <TAB>" $backup_subs
bash_complete opsctl backup - >offered
expect_offered "bash: opsctl backup -<TAB>" --no-prune --dir --format --compression
bash_complete opsctl backup verify - >offered
expect_offered "bash: opsctl backup verify -<TAB>" --restore-test --remote --deep --dir
bash_complete opsctl backup list - >offered
expect_offered "bash: opsctl backup list -<TAB>" --remote --dir
bash_complete opsctl backup upload - >offered
expect_offered "bash: opsctl backup upload -<TAB>" --limit-rate --dir
bash_complete opsctl backup --format "" >offered
expect_offered "bash: opsctl backup --format <TAB>" custom plain
bash_complete opsctl backup --compression "" >offered
expect_offered "bash: opsctl backup --compression <TAB>" zstd gzip none
bash_complete opsctl backup verify "" >offered
expect_offered "bash: opsctl backup verify <TAB>" latest app-20261121T021500Z
grep -qE '^(\.tmp-|not-a-set)' offered && fail "bash: backup verify offers a directory that is not a set"
bash_complete opsctl restore - >offered
expect_offered "bash: opsctl restore -<TAB>" $(help_options ../help-restore)
bash_complete opsctl restore "" >offered
expect_offered "bash: opsctl restore <TAB>" latest app-20261121T021500Z
bash_complete opsctl restore --dir sets "" >offered
expect_offered "bash: opsctl restore --dir sets <TAB>" app-20261120T021500Z
bash_complete opsctl -c db/backup.conf restore "" >offered
expect_offered "bash: opsctl -c db/backup.conf restore <TAB>" app-20261119T021500Z

if command -v fish >/dev/null 2>&1; then
	fish_complete() {
		fish -c 'source $argv[1]; complete -C $argv[2]' "$comp_dir/opsctl.fish" "$1" | cut -f1
	}
	fish_complete 'opsctl ' >offered
	expect_offered "fish: opsctl <TAB>" $commands
	fish_complete 'opsctl health ' >offered
	expect_offered "fish: opsctl health <TAB>" api data-disk memory
	fish_complete 'opsctl -c other.conf health ' >offered
	expect_offered "fish: opsctl -c other.conf health <TAB>" other
	fish_complete 'opsctl health --' >offered
	expect_offered "fish: opsctl health --<TAB>" $(help_options ../help-health | grep -- '^--')
	fish_complete 'opsctl rotate-secret ' >offered
	expect_offered "fish: opsctl rotate-secret <TAB>" jwt db
	fish_complete 'opsctl rotate-secret --' >offered
	expect_offered "fish: opsctl rotate-secret --<TAB>" $(help_options ../help-rotate-secret | grep -- '^--')
	fish_complete 'opsctl migrate ' >offered
	expect_offered "fish: opsctl migrate <TAB>" $migrate_subs
	fish_complete 'opsctl migrate status --' >offered
	expect_offered "fish: opsctl migrate status --<TAB>" --exit-code --dir
	fish_complete 'opsctl migrate --dir ' >offered
	expect_offered "fish: opsctl migrate --dir <TAB>" db/
	fish_complete 'opsctl rollback --dir db/migrations --schema ' >offered
	expect_offered "fish: opsctl rollback --schema <TAB>" 007
	fish_complete 'opsctl backup ' >offered
	expect_offered "fish: opsctl backup <TAB>" $backup_subs
	fish_complete 'opsctl backup --format ' >offered
	expect_offered "fish: opsctl backup --format <TAB>" custom plain
	fish_complete 'opsctl backup --compression ' >offered
	expect_offered "fish: opsctl backup --compression <TAB>" zstd gzip none
	fish_complete 'opsctl backup verify ' >offered
	expect_offered "fish: opsctl backup verify <TAB>" latest app-20261121T021500Z
	fish_complete 'opsctl restore --' >offered
	expect_offered "fish: opsctl restore --<TAB>" $(help_options ../help-restore | grep -- '^--')
	fish_complete 'opsctl -c db/backup.conf restore ' >offered
	expect_offered "fish: opsctl -c db/backup.conf restore <TAB>" latest app-20261119T021500Z
else
	say "fish not installed: fish completion behaviour not tried"
fi
cd .. || fail "cd .."

# ---- (c) pages render without warnings ---------------------------------------

if [ -n "$have_groff" ]; then
	for page in "$man_dir"/*.[1-8]; do
		TEST_CHECKS=$((TEST_CHECKS + 1))
		LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>groff.err
		[ ! -s groff.err ] || {
			show_file groff groff.err
			fail "$(basename "$page"): groff warnings"
		}
	done
	if command -v man >/dev/null 2>&1; then
		for page in "$man_dir"/*.[1-8]; do
			TEST_CHECKS=$((TEST_CHECKS + 1))
			MANWIDTH=80 man --warnings -l "$page" >/dev/null 2>man.err
			[ ! -s man.err ] || {
				show_file man man.err
				fail "$(basename "$page"): man -l warnings at 80 columns"
			}
		done
	fi
else
	say "groff not installed: rendering warnings not checked"
fi

# ---- (d) completion files parse ----------------------------------------------

expect_exit 0 bash -n "$comp_dir/opsctl.bash"
if command -v zsh >/dev/null 2>&1; then
	expect_exit 0 zsh -n "$comp_dir/_opsctl"
else
	say "zsh not installed: _opsctl not parsed"
fi
if command -v fish >/dev/null 2>&1; then
	expect_exit 0 fish -n "$comp_dir/opsctl.fish"
else
	say "fish not installed: opsctl.fish not parsed"
fi

# ---- (e) the marked EXAMPLES run ---------------------------------------------

httpd_start
mkdir bin && ln -s "$OPSCTL" bin/opsctl
export PATH="$TEST_SCRATCH/bin:$PATH"
pg_ready=

# unroff: the text of a line inside .EX/.EE.
unroff() {
	sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' -e 's/\\(ti/~/g' \
		-e 's/\\[&:]//g' -e 's/\\e/\\/g'
}

# localize: point an example at the test's server and scratch directory.
localize() {
	sed -e "s#localhost:8080#127.0.0.1:$HTTPD_PORT#g" -e "s#127\.0\.0\.1:8080#127.0.0.1:$HTTPD_PORT#g" \
		-e "s#/var/lib/node_exporter/textfile/#$PWD/textfile/#g"
}

# pg_ensure: a PostgreSQL for the examples (pg_ready=1), or none here
# (pg_ready=no). Each page gets a database of its own, docs_N, named by
# DATABASE_URL, so one page's migrations do not meet another's.
pg_page_db=
pg_ensure() {
	if [ -z "$pg_ready" ]; then
		if [ -n "$(pg_find_bindir)" ] && { [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; }; then
			pg_start
			pg_ready=1
		else
			pg_ready=no
		fi
	fi
	[ "$pg_ready" = 1 ] || return 0
	if [ "$pg_page_db" != "$name" ]; then
		nr_page_dbs=$((${nr_page_dbs:-0} + 1))
		pg_psql "CREATE DATABASE docs_$nr_page_dbs" >/dev/null || fail "CREATE DATABASE docs_$nr_page_dbs"
		export DATABASE_URL=${TEST_PG_URL%/postgres}/docs_$nr_page_dbs
		pg_page_db=$name
	fi
}

# run_example PAGE LINE SPEC CMD
run_example() {
	local page=$1 lineno=$2 spec=$3 cmd=$4 want file
	want=$(sed -n 's/.*exit=\([0-9,]*\).*/\1/p' <<<"$spec")
	[ -n "$want" ] || fail "$page:$lineno: marker without exit=N: $spec"
	case " $spec " in
	*" needs=postgres "*)
		pg_ensure
		if [ "$pg_ready" = no ]; then
			say "$page:$lineno: no PostgreSQL here, example not run: $cmd"
			return
		fi
		;;
	esac
	say "$page:$lineno: \$ $cmd"
	mkdir -p textfile
	expect_exit "$want" bash -c "$cmd"
	file=$(sed -n 's/.*--metrics-file[= ]\([^ ]*\).*/\1/p' <<<"$cmd")
	if [ -n "$file" ]; then
		TEST_CHECKS=$((TEST_CHECKS + 1))
		[ -s "$file" ] || fail "$page:$lineno: the example wrote no metrics file '$file'"
	fi
	NR_EXAMPLES=$((NR_EXAMPLES + 1))
}

NR_EXAMPLES=0
for page in "$man_dir"/*.[1-8]; do
	name=$(basename "$page")
	mkdir "ex-$name" && cd "ex-$name" || fail "cd ex-$name"
	lineno=0 in_ex=0 test_spec="" test_file="" in_examples=0 block="" block_start=0
	while IFS= read -r line || [ -n "$line" ]; do
		lineno=$((lineno + 1))
		case $line in
		'.SH '*)
			[ "$line" = ".SH EXAMPLES" ] && in_examples=1 || in_examples=0
			;;
		'.\" test-serve: '*)
			read -r path status body <<<"${line#.\\\" test-serve: }"
			httpd_set "$path" "$status" "$body"
			;;
		'.\" test-file: '*) test_file=${line#.\\\" test-file: } ;;
		'.\" test-run: '*)
			# a fixture the reader need not see: runs now, must exit 0
			pg_ensure
			if [ "$pg_ready" = 1 ]; then
				say "$name:$lineno: (setup) ${line#.\\\" test-run: }"
				expect_exit 0 bash -c "${line#.\\\" test-run: }"
			fi
			;;
		'.\" test: '*) test_spec=${line#.\\\" test: } ;;
		.EX)
			in_ex=1 block="" block_start=$lineno
			;;
		.EE)
			in_ex=0
			if [ -n "$test_file" ]; then
				mkdir -p "$(dirname "$test_file")" || fail "$name:$block_start: mkdir for $test_file"
				printf '%s' "$block" | unroff | localize >"$test_file"
			elif [ -n "$test_spec" ]; then
				cmd=""
				while IFS= read -r l; do
					case " $test_spec " in
					*" cron "*)
						# a crontab line: five time fields, then the command
						[ -n "$l" ] && [ "${l#\#}" = "$l" ] &&
							run_example "$name" "$block_start" "$test_spec" \
								"$(awk '{ $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' <<<"$l")"
						continue
						;;
					esac
					if [ -n "$cmd" ]; then
						cmd="$cmd ${l#"${l%%[! ]*}"}"
					elif [ "${l#\$ }" != "$l" ]; then
						cmd=${l#\$ }
					else
						continue
					fi
					if [ "${cmd%\\}" != "$cmd" ]; then
						cmd=${cmd%\\}
						continue
					fi
					run_example "$name" "$block_start" "$test_spec" "$cmd"
					cmd=""
				done < <(printf '%s' "$block" | unroff | localize)
			elif [ "$in_examples" = 1 ] && grep -q '^\$ opsctl.*localhost:8080' <<<"$block"; then
				fail "$name:$block_start: an example that can run against a local server is not marked '.\\\" test: exit=N'"
			fi
			test_file="" test_spec=""
			;;
		*)
			[ "$in_ex" = 1 ] && block+="$line"$'\n'
			;;
		esac
	done <"$page"
	[ -z "$test_spec$test_file" ] || fail "$name: a test marker with no .EX block after it"
	cd "$TEST_SCRATCH" || fail "cd $TEST_SCRATCH"
done
[ "$NR_EXAMPLES" -ge 5 ] || fail "only $NR_EXAMPLES marked examples ran (markers lost?)"
say "$NR_EXAMPLES man page examples ran"

test_done
