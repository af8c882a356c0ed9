# fish completion for opsctl(1). Installed into fish's vendor_completions.d.
# The option lists follow 'opsctl -h' and 'opsctl CMD -h' for each command
# (tests/integration/t0900-docs.sh checks that none is missing).

# The config file opsctl would read: -c FILE on the line, $OPSCTL_CONFIG,
# ./opsctl.conf, /etc/opsctl/opsctl.conf.
function __opsctl_config_file
    set -l words (commandline -opc)
    set -l n (count $words)
    for i in (seq 2 $n)
        switch $words[$i]
            case -c --config
                if test $i -lt $n
                    echo $words[(math $i + 1)]
                    return
                end
            case '--config=*'
                string replace -- '--config=' '' $words[$i]
                return
            case '-c?*'
                string sub -s 3 -- $words[$i]
                return
        end
    end
    if set -q OPSCTL_CONFIG; and test -n "$OPSCTL_CONFIG"
        echo $OPSCTL_CONFIG
    else if test -f opsctl.conf
        echo opsctl.conf
    else
        echo /etc/opsctl/opsctl.conf
    end
end

# The NAMEs of the [check "NAME"] sections of the config.
function __opsctl_checks
    set -l conf (__opsctl_config_file)
    test -r "$conf"; or return
    awk '/^[ \t]*\[[ \t]*[Cc][Hh][Ee][Cc][Kk][ \t]+"[^"]+"[ \t]*\]/ {
        s = $0; sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); print s "\tconfigured check"
    }' $conf 2>/dev/null
end

# The NAMEs of the [secret "NAME"] sections of the config.
function __opsctl_secrets
    set -l conf (__opsctl_config_file)
    test -r "$conf"; or return
    awk '/^[ \t]*\[[ \t]*[Ss][Ee][Cc][Rr][Ee][Tt][ \t]+"[^"]+"[ \t]*\]/ {
        s = $0; sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); print s "\tconfigured secret"
    }' $conf 2>/dev/null
end

# The command word, skipping global options and their values; empty if none yet.
function __opsctl_command
    set -l words (commandline -opc)
    set -l skip 0
    for w in $words[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case -c --config --env-file -o --output --lock-wait --db
                set skip 1
            case '-*'
            case '*'
                echo $w
                return
        end
    end
end

function __opsctl_no_command
    set -l cmd (__opsctl_command)
    test -z "$cmd"
end

function __opsctl_using
    set -l cmd (__opsctl_command)
    test "$cmd" = "$argv[1]"
end

function __opsctl_health_targets
    set -l tok (commandline -ct)
    if string match -q -- 'disk:*' $tok
        set -l dir (string replace -- 'disk:' '' $tok)
        test -n "$dir"; or set dir /
        for d in (__fish_complete_directories $dir)
            echo disk:$d
        end
        return
    end
    __opsctl_checks
    printf '%s\t%s\n' memory 'memory usage of this machine' \
        http:// 'HTTP endpoint' https:// 'HTTPS endpoint' \
        postgresql:// 'PostgreSQL database URL' tcp:// 'TCP connect (tcp://HOST:PORT)' \
        redis:// 'Redis PING (redis://HOST:PORT)' disk: 'file system usage (disk:PATH)'
end

# The words after the command (its options and their values skipped).
function __opsctl_args
    set -l words (commandline -opc)
    set -l seen 0
    set -l skip 0
    for w in $words[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        if test $seen = 0
            switch $w
                case -c --config --env-file -o --output --lock-wait --db
                    set skip 1
                case '-*'
                case '*'
                    set seen 1
            end
            continue
        end
        switch $w
            case --to --dir --schema --format --compression --target-db -j --jobs --reason --limit-rate
                set skip 1
            case '-*'
            case '*'
                echo $w
        end
    end
end

# migrate's subcommand, or nothing yet.
function __opsctl_migrate_sub
    set -l args (__opsctl_args)
    test (count $args) -gt 0; and echo $args[1]
end

function __opsctl_migrate_needs_sub
    __opsctl_using migrate; or return 1
    set -l sub (__opsctl_migrate_sub)
    test -z "$sub"
end

function __opsctl_migrate_sub_is
    __opsctl_using migrate; or return 1
    set -l sub (__opsctl_migrate_sub)
    contains -- "$sub" $argv
end

# The versions of the migration files in --dir DIR (on the line) or ./migrations.
function __opsctl_migration_versions
    set -l words (commandline -opc)
    set -l dir migrations
    set -l n (count $words)
    for i in (seq 1 $n)
        switch $words[$i]
            case --dir
                test $i -lt $n; and set dir $words[(math $i + 1)]
            case '--dir=*'
                set dir (string replace -- '--dir=' '' $words[$i])
        end
    end
    for f in $dir/*.sql
        set -l base (basename $f)
        string match -q -- '*.down.sql' $base; and continue
        string match -qr -- '^[0-9]+_' $base; or continue
        string replace -r -- '_.*' '' $base
    end
end

# The ids of the backup sets in --dir DIR (on the line), else the config's
# [backup] dir (relative to the config file), else ./backups.
function __opsctl_backup_ids
    set -l words (commandline -opc)
    set -l n (count $words)
    set -l dir
    for i in (seq 1 $n)
        switch $words[$i]
            case --dir
                test $i -lt $n; and set dir $words[(math $i + 1)]
            case '--dir=*'
                set dir (string replace -- '--dir=' '' $words[$i])
        end
    end
    if test -z "$dir"
        set -l conf (__opsctl_config_file)
        if test -r "$conf"
            set dir (awk '
                /^[ \t]*\[/ { s = tolower($0); gsub(/[ \t]/, "", s); on = (s ~ /^\[backup\]/); next }
                on && /^[ \t]*[Dd][Ii][Rr][ \t]*=/ {
                    v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]+[;#].*$/, "", v); sub(/[ \t]+$/, "", v); d = v
                }
                END { if (d != "") print d }' $conf 2>/dev/null)
            if test -n "$dir"; and not string match -q -- '/*' $dir; and string match -q -- '*/*' $conf
                set dir (string replace -r -- '/[^/]*$' '' $conf)/$dir
            end
        end
        test -n "$dir"; or set dir backups
    end
    printf '%s\t%s\n' latest 'the newest set'
    for f in $dir/*/manifest.json
        basename (dirname $f)
    end
end

# backup's subcommand, or nothing yet.
function __opsctl_backup_sub
    set -l args (__opsctl_args)
    test (count $args) -gt 0; and echo $args[1]
end

function __opsctl_backup_needs_sub
    __opsctl_using backup; or return 1
    set -l sub (__opsctl_backup_sub)
    test -z "$sub"
end

function __opsctl_backup_sub_is
    __opsctl_using backup; or return 1
    set -l sub (__opsctl_backup_sub)
    contains -- "$sub" $argv
end

# verify's and upload's ID: only one, after the subcommand.
function __opsctl_backup_verify_needs_id
    __opsctl_backup_sub_is verify upload; or return 1
    set -l args (__opsctl_args)
    test (count $args) -lt 2
end

# rotate-secret: one NAME, and none with --list or --recover.
function __opsctl_rotate_secret_needs_name
    __opsctl_using rotate-secret; or return 1
    set -l words (commandline -opc)
    contains -- --list $words; and return 1
    contains -- --recover $words; and return 1
    set -l args (__opsctl_args)
    test (count $args) -lt 1
end

function __opsctl_restore_needs_set
    __opsctl_using restore; or return 1
    set -l args (__opsctl_args)
    test (count $args) -lt 1
end

complete -c opsctl -f

# global options (before the command)
complete -c opsctl -n __opsctl_no_command -s c -l config -r -F -d 'config file'
complete -c opsctl -n __opsctl_no_command -l env-file -r -F -d "the app's env file"
complete -c opsctl -n __opsctl_no_command -s o -l output -x -a 'text json' -d 'output format'
complete -c opsctl -n __opsctl_no_command -l json -d 'same as --output json'
complete -c opsctl -n __opsctl_no_command -s q -l quiet -d 'print only errors and results'
complete -c opsctl -n __opsctl_no_command -s v -l verbose -d 'say more (repeat for more)'
complete -c opsctl -n __opsctl_no_command -l no-color -d 'no colour even on a terminal'
complete -c opsctl -n __opsctl_no_command -s n -l dry-run -d 'print the plan, change nothing'
complete -c opsctl -n __opsctl_no_command -s y -l yes -d 'do not ask for confirmation'
complete -c opsctl -n __opsctl_no_command -l lock-wait -x -a '30s 1m 5m 10m' -d "wait this long for another run's lock"
complete -c opsctl -n __opsctl_no_command -l db -x -a 'postgresql://' -d 'database URL'
complete -c opsctl -n __opsctl_no_command -l version -d 'print versions and exit'
complete -c opsctl -n __opsctl_no_command -s h -l help -d 'show the global options and commands'

# commands
complete -c opsctl -n __opsctl_no_command -a health -d 'probe HTTP endpoints, PostgreSQL, TCP, disk, memory'
complete -c opsctl -n __opsctl_no_command -a migrate -d 'apply, undo, check and create versioned SQL migrations'
complete -c opsctl -n __opsctl_no_command -a rollback -d 'return to the previous release, or undo migrations (--schema)'
complete -c opsctl -n __opsctl_no_command -a deploy -d 'backup, unpack, migrate, switch, restart, health-gate, roll back on failure'
complete -c opsctl -n __opsctl_no_command -a backup -d 'create, list, verify and prune verified backup sets'
complete -c opsctl -n __opsctl_no_command -a restore -d 'restore a backup into a new database, then swap it in'
complete -c opsctl -n __opsctl_no_command -a rotate-secret -d 'rotate a secret where it lives and in the env file, then restart and gate'
complete -c opsctl -n __opsctl_no_command -a help -d 'show help for opsctl or a command'

# help COMMAND
complete -c opsctl -n '__opsctl_using help' -a 'health migrate rollback deploy backup restore rotate-secret help'

# migrate
complete -c opsctl -n __opsctl_migrate_needs_sub -a up -d 'apply the pending migrations (the default)'
complete -c opsctl -n __opsctl_migrate_needs_sub -a down -d 'undo the newest migration, or those above --to'
complete -c opsctl -n __opsctl_migrate_needs_sub -a status -d 'show applied and pending migrations'
complete -c opsctl -n __opsctl_migrate_needs_sub -a validate -d 'report drift, missing files, partial runs'
complete -c opsctl -n __opsctl_migrate_needs_sub -a repair -d 'accept edited files, forget partial runs'
complete -c opsctl -n __opsctl_migrate_needs_sub -a new -d 'create the next migration and its down file'
complete -c opsctl -n __opsctl_migrate_needs_sub -a baseline -d 'mark files up to VERSION as applied'
complete -c opsctl -n '__opsctl_using migrate; and not __opsctl_migrate_sub_is status validate repair new baseline' -l to -x -a '(__opsctl_migration_versions)' -d 'up: apply up to VERSION; down: undo above it'
complete -c opsctl -n '__opsctl_using migrate; and not __opsctl_migrate_sub_is down status validate repair new baseline' -l allow-out-of-order -d 'apply pending versions below the newest applied one'
complete -c opsctl -n '__opsctl_migrate_needs_sub; or __opsctl_migrate_sub_is status' -l exit-code -d 'status: exit 9 when migrations are pending'
complete -c opsctl -n '__opsctl_using migrate' -l dir -x -a '(__fish_complete_directories)' -d 'migrations directory'
complete -c opsctl -n '__opsctl_using migrate' -s h -l help -d 'show the options'
complete -c opsctl -n '__opsctl_migrate_sub_is baseline' -a '(__opsctl_migration_versions)' -d 'version'

# deploy
complete -c opsctl -n '__opsctl_using deploy' -a 'list status' -d 'subcommand'
complete -c opsctl -n '__opsctl_using deploy' -l strategy -x -a 'symlink blue-green' -d 'deploy strategy'
complete -c opsctl -n '__opsctl_using deploy' -l no-backup -d 'skip the database backup'
complete -c opsctl -n '__opsctl_using deploy' -l no-migrate -d "do not apply the release's migrations"
complete -c opsctl -n '__opsctl_using deploy' -l sha256 -x -d 'refuse the artifact unless its SHA-256 is HEX'
complete -c opsctl -n '__opsctl_using deploy' -l reason -x -d 'why, for the history'
complete -c opsctl -n '__opsctl_using deploy' -s n -l dry-run -d 'print the plan, change nothing'
complete -c opsctl -n '__opsctl_using deploy' -s h -l help -d 'show the options'

# rollback
complete -c opsctl -n '__opsctl_using rollback' -l with-schema -d 'also undo the migrations the release being left applied'
complete -c opsctl -n '__opsctl_using rollback' -l reason -x -d 'why, for the history'
complete -c opsctl -n '__opsctl_using rollback' -l schema -x -a '(__opsctl_migration_versions)' -d 'undo migrations above VERSION'
complete -c opsctl -n '__opsctl_using rollback' -l dir -x -a '(__fish_complete_directories)' -d 'migrations directory'
complete -c opsctl -n '__opsctl_using rollback' -s h -l help -d 'show the options'

# backup
complete -c opsctl -n __opsctl_backup_needs_sub -a create -d 'back up the database and the paths (the default)'
complete -c opsctl -n __opsctl_backup_needs_sub -a list -d 'show the backup sets'
complete -c opsctl -n __opsctl_backup_needs_sub -a verify -d 'check a set against its manifest'
complete -c opsctl -n __opsctl_backup_needs_sub -a prune -d 'apply the retention policy (here and offsite)'
complete -c opsctl -n __opsctl_backup_needs_sub -a upload -d 'send the sets not yet on the offsite storage'
complete -c opsctl -n '__opsctl_backup_needs_sub; or __opsctl_backup_sub_is create' -l no-prune -d 'create: keep every old backup this time'
complete -c opsctl -n '__opsctl_backup_needs_sub; or __opsctl_backup_sub_is create' -l format -x -a 'directory custom plain' -d 'create: directory or custom (pg_restore), or plain (psql)'
complete -c opsctl -n '__opsctl_backup_needs_sub; or __opsctl_backup_sub_is create' -l compression -x -a 'zstd gzip none' -d 'create: zstd, gzip or none'
complete -c opsctl -n '__opsctl_backup_needs_sub; or __opsctl_backup_sub_is create verify' -s j -l jobs -x -a '1 2 4 8' -d 'create, verify --restore-test: parallel pg_dump/pg_restore jobs'
complete -c opsctl -n '__opsctl_backup_sub_is verify' -l restore-test -d 'verify: also restore into a scratch database'
complete -c opsctl -n '__opsctl_backup_sub_is list verify' -l remote -d 'list, verify: the sets on the [backup] offsite storage'
complete -c opsctl -n '__opsctl_backup_sub_is verify' -l deep -d 'verify --remote: download every file and check its SHA-256'
complete -c opsctl -n '__opsctl_backup_needs_sub; or __opsctl_backup_sub_is create upload' -l limit-rate -x -a '10M 20M 50M 100M' -d 'create, upload: upload at most RATE bytes per second'
complete -c opsctl -n '__opsctl_using backup' -l dir -x -a '(__fish_complete_directories)' -d 'backup directory'
complete -c opsctl -n '__opsctl_using backup' -s h -l help -d 'show the options'
complete -c opsctl -n __opsctl_backup_verify_needs_id -a '(__opsctl_backup_ids)' -d 'backup set'

# restore
complete -c opsctl -n '__opsctl_using restore' -l target-db -x -d 'restore beside the live database under NAME (no swap)'
complete -c opsctl -n '__opsctl_using restore' -s j -l jobs -x -a '1 2 4 8' -d 'parallel pg_restore jobs (default: [backup] jobs or CPUs, at most 4; custom sets: 1)'
complete -c opsctl -n '__opsctl_using restore' -l files -d 'also put the paths archive back'
complete -c opsctl -n '__opsctl_using restore' -l no-files -d 'do not put the paths archive back'
complete -c opsctl -n '__opsctl_using restore' -l sources -d 'also put the [source]s (Redis, snapshots) back'
complete -c opsctl -n '__opsctl_using restore' -l no-sources -d 'do not put the [source]s back'
complete -c opsctl -n '__opsctl_using restore' -l dir -x -a '(__fish_complete_directories)' -d 'backup directory'
complete -c opsctl -n '__opsctl_using restore' -s h -l help -d 'show the options'
complete -c opsctl -n __opsctl_restore_needs_set -a '(__opsctl_backup_ids)' -d 'backup set'

# rotate-secret
complete -c opsctl -n '__opsctl_using rotate-secret' -l no-restart -d 'do not restart the service (the app re-reads the secret itself)'
complete -c opsctl -n '__opsctl_using rotate-secret' -l show -d 'print the new value (only to a terminal)'
complete -c opsctl -n '__opsctl_using rotate-secret' -l setup -d 'alternating: create the two login roles first (needs CREATEROLE)'
complete -c opsctl -n '__opsctl_using rotate-secret' -l reason -x -d 'why, for the history'
complete -c opsctl -n '__opsctl_using rotate-secret' -l list -d 'the secrets: kind, fingerprint, last rotation, age'
complete -c opsctl -n '__opsctl_using rotate-secret' -l recover -d 'only finish or undo a rotation that was killed part way'
complete -c opsctl -n '__opsctl_using rotate-secret' -s h -l help -d 'show the options'
complete -c opsctl -n __opsctl_rotate_secret_needs_name -a '(__opsctl_secrets)'

# health
complete -c opsctl -n '__opsctl_using health' -l db -d 'also check the database'
complete -c opsctl -n '__opsctl_using health' -s t -l timeout -x -a '2s 5s 10s 30s 60s' -d 'deadline of each check'
complete -c opsctl -n '__opsctl_using health' -l wait -x -a '30s 60s 90s 2m 5m' -d 'keep probing until every check passes or this passes'
complete -c opsctl -n '__opsctl_using health' -l interval -x -a '500ms 1s 2s 5s' -d 'first pause between rounds'
complete -c opsctl -n '__opsctl_using health' -l consecutive -x -a '1 2 3 5' -d 'passes in a row needed with --wait'
complete -c opsctl -n '__opsctl_using health' -l require -x -d "components that must be up in ad hoc URLs' bodies"
complete -c opsctl -n '__opsctl_using health' -l expect -x -a '200 200,204 200-299 2xx 200-399' -d 'HTTP statuses that pass for ad hoc URLs'
complete -c opsctl -n '__opsctl_using health' -l warn -x -a '70% 80% 85% 90%' -d 'warning threshold for ad hoc disk: and memory'
complete -c opsctl -n '__opsctl_using health' -l crit -x -a '85% 90% 95%' -d 'critical threshold for ad hoc disk: and memory'
complete -c opsctl -n '__opsctl_using health' -l nagios -d 'monitoring-plugin output and exit codes (0/1/2/3)'
complete -c opsctl -n '__opsctl_using health' -l metrics-file -r -F -d 'also write Prometheus text to FILE'
complete -c opsctl -n '__opsctl_using health' -s h -l help -d 'show the options'
complete -c opsctl -n '__opsctl_using health' -a '(__opsctl_health_targets)'
