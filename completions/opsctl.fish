# fish completion for opsctl(1). Installed into fish's vendor_completions.d.
# The option lists follow 'opsctl -h' and 'opsctl health -h'
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
complete -c opsctl -n __opsctl_no_command -a help -d 'show help for opsctl or a command'

# help COMMAND
complete -c opsctl -n '__opsctl_using help' -a 'health help'

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
