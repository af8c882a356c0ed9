# bash completion for opsctl(1).
# Installed as .../bash-completion/completions/opsctl; or: source opsctl.bash
# The option lists follow 'opsctl -h' and 'opsctl CMD -h' for each command
# (tests/integration/t0900-docs.sh checks that none is missing).

_opsctl_global_opts='-c --config --env-file -o --output --json -q --quiet -v --verbose --no-color -n --dry-run -y --yes --lock-wait --db --version -h --help'
_opsctl_commands='health migrate rollback deploy backup restore rotate-secret help'
_opsctl_health_opts='--db -t --timeout --wait --interval --consecutive --require --expect --warn --crit --nagios --metrics-file -h --help'
_opsctl_migrate_subcommands='up down status validate repair new baseline'
_opsctl_rollback_opts='--with-schema --reason --schema --dir -h --help'
_opsctl_deploy_opts='--strategy --no-backup --no-migrate --sha256 --reason -n --dry-run -h --help'
_opsctl_backup_subcommands='create list verify prune upload'
_opsctl_restore_opts='--target-db -j --jobs --files --no-files --sources --no-sources --dir -h --help'
_opsctl_rotate_secret_opts='--no-restart --show --setup --reason --list --recover -h --help'

# The config file opsctl would read: -c FILE on the line, $OPSCTL_CONFIG,
# ./opsctl.conf, /etc/opsctl/opsctl.conf.
_opsctl_config_file() {
	local i w
	for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-c | --config)
			[ "${COMP_WORDS[i + 1]}" = "=" ] && i=$((i + 1))
			printf '%s\n' "${COMP_WORDS[i + 1]/#\~/$HOME}"
			return
			;;
		--config=*)
			printf '%s\n' "${w#--config=}"
			return
			;;
		-c?*)
			printf '%s\n' "${w#-c}"
			return
			;;
		esac
	done
	if [ -n "${OPSCTL_CONFIG:-}" ]; then
		printf '%s\n' "$OPSCTL_CONFIG"
	elif [ -f opsctl.conf ]; then
		printf '%s\n' opsctl.conf
	else
		printf '%s\n' /etc/opsctl/opsctl.conf
	fi
}

# The NAMEs of the [check "NAME"] sections of the config.
_opsctl_check_names() {
	local conf
	conf=$(_opsctl_config_file)
	[ -r "$conf" ] || return 0
	awk '/^[ \t]*\[[ \t]*[Cc][Hh][Ee][Cc][Kk][ \t]+"[^"]+"[ \t]*\]/ {
		s = $0; sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); print s
	}' "$conf" 2>/dev/null
}

# The NAMEs of the [secret "NAME"] sections of the config.
_opsctl_secret_names() {
	local conf
	conf=$(_opsctl_config_file)
	[ -r "$conf" ] || return 0
	awk '/^[ \t]*\[[ \t]*[Ss][Ee][Cc][Rr][Ee][Tt][ \t]+"[^"]+"[ \t]*\]/ {
		s = $0; sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); print s
	}' "$conf" 2>/dev/null
}

# The release ids under [deploy] root/releases of the config.
_opsctl_release_ids() {
	local conf root d
	conf=$(_opsctl_config_file)
	[ -r "$conf" ] || return 0
	root=$(awk '/^[ \t]*\[/ { on = ($0 ~ /^[ \t]*\[[ \t]*[Dd][Ee][Pp][Ll][Oo][Yy][ \t]*\]/) ; next }
		on && /^[ \t]*root[ \t]*=/ { sub(/^[^=]*=[ \t]*/, ""); sub(/[ \t]*[;#].*$/, ""); print; exit }' "$conf" 2>/dev/null)
	[ -n "$root" ] || return 0
	case $root in /*) ;; *) root=$(dirname "$conf")/$root ;; esac
	for d in "$root"/releases/*/; do
		[ -d "$d" ] || continue
		d=${d%/}
		printf '%s\n' "${d##*/}"
	done
}

# COMPREPLY from a word list, one candidate per line (names may hold spaces).
_opsctl_reply() {
	local cur=$1 line
	shift
	while IFS= read -r line; do
		[ -n "$line" ] && [[ $line == "$cur"* ]] && COMPREPLY+=("$line")
	done <<<"$(printf '%s\n' "$@")"
}

# The versions of the migration files: in --dir DIR on the line, else
# ./migrations (a [migrations] dir of the config is not looked up).
_opsctl_migration_versions() {
	local i dir=migrations f
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case ${COMP_WORDS[i]} in
		--dir)
			dir=${COMP_WORDS[i + 1]}
			[ "$dir" = "=" ] && dir=${COMP_WORDS[i + 2]}
			;;
		--dir=*) dir=${COMP_WORDS[i]#--dir=} ;;
		esac
	done
	dir=${dir/#\~/$HOME}
	for f in "$dir"/[0-9]*_*.sql; do
		[ -e "$f" ] || continue
		f=${f##*/}
		[[ $f == *.down.sql ]] && continue
		printf '%s\n' "${f%%_*}"
	done
}

# The ids of the backup sets (directories with a manifest.json) in --dir DIR
# on the line, else the config's [backup] dir (relative to the config file),
# else ./backups.
_opsctl_backup_ids() {
	local i dir="" conf f
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case ${COMP_WORDS[i]} in
		--dir)
			dir=${COMP_WORDS[i + 1]}
			[ "$dir" = "=" ] && dir=${COMP_WORDS[i + 2]}
			;;
		--dir=*) dir=${COMP_WORDS[i]#--dir=} ;;
		esac
	done
	if [ -z "$dir" ]; then
		conf=$(_opsctl_config_file)
		[ -r "$conf" ] && dir=$(awk '
			/^[ \t]*\[/ { s = tolower($0); gsub(/[ \t]/, "", s); on = (s ~ /^\[backup\]/); next }
			on && /^[ \t]*[Dd][Ii][Rr][ \t]*=/ {
				v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]+[;#].*$/, "", v); sub(/[ \t]+$/, "", v); d = v
			}
			END { if (d != "") print d }' "$conf" 2>/dev/null)
		if [ -n "$dir" ] && [ "${dir#/}" = "$dir" ] && [[ $conf == */* ]]; then
			dir=${conf%/*}/$dir
		fi
		[ -n "$dir" ] || dir=backups
	fi
	dir=${dir/#\~/$HOME}
	for f in "$dir"/*/manifest.json; do
		[ -e "$f" ] || continue
		f=${f%/manifest.json}
		printf '%s\n' "${f##*/}"
	done
}

_opsctl_dirs() {
	local IFS=$'\n'
	compopt -o filenames 2>/dev/null
	COMPREPLY+=($(compgen -d -- "$1"))
}

_opsctl_files() {
	local IFS=$'\n'
	compopt -o filenames 2>/dev/null
	COMPREPLY+=($(compgen -f -- "$1"))
}

_opsctl() {
	local cur prev cmd="" i w skip=0 line word
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}

	# --opt=VALUE: bash splits at '=' (COMP_WORDBREAKS).
	if [ "$cur" = "=" ]; then
		prev=${COMP_WORDS[COMP_CWORD - 1]}
		cur=""
	elif [ "$prev" = "=" ] && [ "$COMP_CWORD" -ge 2 ]; then
		prev=${COMP_WORDS[COMP_CWORD - 2]}
	fi

	# The command: the first word that is not a global option or its value.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [ "$skip" = 1 ]; then
			skip=0
			[ "$w" = "=" ] && skip=1
			continue
		fi
		case $w in
		-c | --config | --env-file | -o | --output | --lock-wait | --db) skip=1 ;;
		=) ;;
		-*) ;;
		*)
			cmd=$w
			break
			;;
		esac
	done

	if [ -z "$cmd" ]; then
		case $prev in
		-c | --config | --env-file)
			_opsctl_files "$cur"
			return
			;;
		-o | --output)
			COMPREPLY=($(compgen -W 'text json' -- "$cur"))
			return
			;;
		--lock-wait)
			COMPREPLY=($(compgen -W '30s 1m 5m 10m' -- "$cur"))
			return
			;;
		--db)
			COMPREPLY=($(compgen -W 'postgresql://' -- "$cur"))
			compopt -o nospace 2>/dev/null
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_global_opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_opsctl_commands" -- "$cur"))
		fi
		return
	fi

	case $cmd in
	help)
		[ "$prev" = help ] && COMPREPLY=($(compgen -W "$_opsctl_commands" -- "$cur"))
		;;
	migrate)
		local sub=""
		for ((i = i + 1; i < COMP_CWORD; i++)); do
			w=${COMP_WORDS[i]}
			case $w in
			--to | --dir) i=$((i + 1)); [ "${COMP_WORDS[i]}" = "=" ] && i=$((i + 1)) ;;
			-*) ;;
			*)
				sub=$w
				break
				;;
			esac
		done
		case $prev in
		--dir)
			_opsctl_dirs "$cur"
			return
			;;
		--to)
			COMPREPLY=($(compgen -W "$(_opsctl_migration_versions)" -- "$cur"))
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			case $sub in
			"" | up) COMPREPLY=($(compgen -W '--to --allow-out-of-order --dir -h --help' -- "$cur")) ;;
			down) COMPREPLY=($(compgen -W '--to --dir -h --help' -- "$cur")) ;;
			status) COMPREPLY=($(compgen -W '--exit-code --dir -h --help' -- "$cur")) ;;
			*) COMPREPLY=($(compgen -W '--dir -h --help' -- "$cur")) ;;
			esac
			return
		fi
		case $sub in
		"") COMPREPLY=($(compgen -W "$_opsctl_migrate_subcommands" -- "$cur")) ;;
		baseline)
			[ "$prev" = baseline ] && COMPREPLY=($(compgen -W "$(_opsctl_migration_versions)" -- "$cur"))
			;;
		esac
		;;
	rollback)
		case $prev in
		--schema)
			COMPREPLY=($(compgen -W "$(_opsctl_migration_versions)" -- "$cur"))
			return
			;;
		--dir)
			_opsctl_dirs "$cur"
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_rollback_opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_opsctl_rollback_opts $(_opsctl_release_ids)" -- "$cur"))
		fi
		;;
	deploy)
		case $prev in
		--strategy)
			COMPREPLY=($(compgen -W 'symlink blue-green' -- "$cur"))
			return
			;;
		--sha256 | --reason) return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_deploy_opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W 'list status' -- "$cur"))
			compopt -o filenames 2>/dev/null
			COMPREPLY+=($(compgen -f -- "$cur"))
		fi
		;;
	backup)
		local sub=""
		for ((i = i + 1; i < COMP_CWORD; i++)); do
			w=${COMP_WORDS[i]}
			case $w in
			--dir | --format | --compression | -j | --jobs | --limit-rate) i=$((i + 1)); [ "${COMP_WORDS[i]}" = "=" ] && i=$((i + 1)) ;;
			-*) ;;
			*)
				sub=$w
				break
				;;
			esac
		done
		case $prev in
		--dir)
			_opsctl_dirs "$cur"
			return
			;;
		--format)
			COMPREPLY=($(compgen -W 'directory custom plain' -- "$cur"))
			return
			;;
		--compression)
			COMPREPLY=($(compgen -W 'zstd gzip none' -- "$cur"))
			return
			;;
		-j | --jobs)
			COMPREPLY=($(compgen -W '1 2 4 8' -- "$cur"))
			return
			;;
		--limit-rate)
			COMPREPLY=($(compgen -W '10M 20M 50M 100M' -- "$cur"))
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			case $sub in
			"" | create) COMPREPLY=($(compgen -W '--no-prune --dir --format --compression -j --jobs --limit-rate -h --help' -- "$cur")) ;;
			verify) COMPREPLY=($(compgen -W '--restore-test --remote --deep -j --jobs --dir -h --help' -- "$cur")) ;;
			list) COMPREPLY=($(compgen -W '--remote --dir -h --help' -- "$cur")) ;;
			upload) COMPREPLY=($(compgen -W '--limit-rate --dir -h --help' -- "$cur")) ;;
			*) COMPREPLY=($(compgen -W '--dir -h --help' -- "$cur")) ;;
			esac
			return
		fi
		case $sub in
		"") COMPREPLY=($(compgen -W "$_opsctl_backup_subcommands" -- "$cur")) ;;
		verify | upload)
			# one ID, after the subcommand's options
			local n=0
			for ((i = i + 1; i < COMP_CWORD; i++)); do
				case ${COMP_WORDS[i]} in
				--dir | -j | --jobs | --limit-rate) i=$((i + 1)); [ "${COMP_WORDS[i]}" = "=" ] && i=$((i + 1)) ;;
				-*) ;;
				*) n=$((n + 1)) ;;
				esac
			done
			# upload takes an id, not 'latest'
			[ "$n" = 0 ] && COMPREPLY=($(compgen -W "$([ "$sub" = verify ] && echo latest) $(_opsctl_backup_ids)" -- "$cur"))
			;;
		esac
		;;
	restore)
		case $prev in
		--dir)
			_opsctl_dirs "$cur"
			return
			;;
		-j | --jobs)
			COMPREPLY=($(compgen -W '1 2 4 8' -- "$cur"))
			return
			;;
		--target-db)
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_restore_opts" -- "$cur"))
		elif [[ $cur == */* || $cur == .* ]]; then
			_opsctl_dirs "$cur"    # PATH: a set's directory
		else
			COMPREPLY=($(compgen -W "latest $(_opsctl_backup_ids)" -- "$cur"))
		fi
		;;
	rotate-secret)
		case $prev in
		--reason) return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_rotate_secret_opts" -- "$cur"))
			return
		fi
		# one NAME, and none with --list or --recover
		local n=0
		for ((i = i + 1; i < COMP_CWORD; i++)); do
			case ${COMP_WORDS[i]} in
			--list | --recover | -h | --help) return ;;
			--reason) i=$((i + 1)); [ "${COMP_WORDS[i]}" = "=" ] && i=$((i + 1)) ;;
			-*) ;;
			*) n=$((n + 1)) ;;
			esac
		done
		[ "$n" = 0 ] && _opsctl_reply "$cur" "$(_opsctl_secret_names)"
		;;
	health)
		case $prev in
		--metrics-file)
			_opsctl_files "$cur"
			return
			;;
		-t | --timeout | --wait | --interval)
			COMPREPLY=($(compgen -W '2s 5s 10s 30s 60s 90s 2m 5m' -- "$cur"))
			return
			;;
		--consecutive)
			COMPREPLY=($(compgen -W '1 2 3 5' -- "$cur"))
			return
			;;
		--expect)
			COMPREPLY=($(compgen -W '200 200,204 200-299 2xx 200-399' -- "$cur"))
			return
			;;
		--warn | --crit)
			COMPREPLY=($(compgen -W '70% 80% 85% 90% 95%' -- "$cur"))
			return
			;;
		--require)
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_opsctl_health_opts" -- "$cur"))
			return
		fi
		# disk:PATH. With ':' in COMP_WORDBREAKS bash sees "disk" ":" "PATH".
		word=$cur
		if [ "$cur" = ":" ] && [ "$prev" = disk ]; then
			word="disk:"
		elif [ "$prev" = ":" ] && [ "${COMP_WORDS[COMP_CWORD - 2]}" = disk ]; then
			word="disk:$cur"
		fi
		if [[ $word == disk:* ]]; then
			local path=${word#disk:} IFS=$'\n' d
			compopt -o nospace -o filenames 2>/dev/null
			# -o filenames makes readline add the '/' after a directory
			for d in $(compgen -d -- "${path:-/}"); do
				if [[ $COMP_WORDBREAKS == *:* ]]; then
					COMPREPLY+=("$d")
				else
					COMPREPLY+=("disk:$d/")
				fi
			done
			return
		fi
		_opsctl_reply "$cur" "$(_opsctl_check_names)" memory
		if [ -z "$cur" ] || [[ "http:// https:// tcp:// redis:// postgresql:// disk:" == *"$cur"* ]]; then
			for line in http:// https:// tcp:// redis:// postgresql:// disk:; do
				[[ $line == "$cur"* ]] && COMPREPLY+=("$line")
			done
			[ "${#COMPREPLY[@]}" -gt 0 ] && compopt -o nospace 2>/dev/null
		fi
		# what bash will put back after its ':' word break
		if [[ $COMP_WORDBREAKS == *:* ]] && [[ $cur == *:* ]]; then
			local prefix=${cur%"${cur##*:}"}
			for i in "${!COMPREPLY[@]}"; do
				COMPREPLY[i]=${COMPREPLY[i]#"$prefix"}
			done
		fi
		;;
	esac
}

complete -F _opsctl opsctl
