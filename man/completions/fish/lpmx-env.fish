# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_lpmx_env_global_optspecs
    string join \n h/help V/version
end

function __fish_lpmx_env_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_lpmx_env_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_lpmx_env_using_subcommand
    set -l cmd (__fish_lpmx_env_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -s V -l version -d 'Print version'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "set" -d 'Set variables: KEY=VALUE arguments, or KEY=VALUE lines on stdin'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "unset" -d 'Remove variables: KEY arguments, or KEY lines on stdin'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "list" -d 'Print the variables, KEY=VALUE lines (or an lpmx.env document)'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "host" -d 'Host programs: container paths whose exec runs the host\'s program (sbatch, qsub, ssh...) as a host process'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "expose" -d 'Write a host command running PROGRAM in this container (arguments, stdin, stdout and exit status passed through), callable from the host and from inside other containers'
complete -c lpmx-env -n "__fish_lpmx_env_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand set" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand unset" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand list" -l json -d 'Print an lpmx.env document (JSON)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand list" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and not __fish_seen_subcommand_from add remove list help" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and not __fish_seen_subcommand_from add remove list help" -f -a "add" -d 'Add HOST (seen at the same path inside) or HOST:CONTAINER'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and not __fish_seen_subcommand_from add remove list help" -f -a "remove" -d 'Remove the host programs at these container paths'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and not __fish_seen_subcommand_from add remove list help" -f -a "list" -d 'Print CONTAINER=HOST lines'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and not __fish_seen_subcommand_from add remove list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add HOST (seen at the same path inside) or HOST:CONTAINER'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove the host programs at these container paths'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print CONTAINER=HOST lines'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand expose" -l as -d 'The command\'s name (default: PROGRAM\'s file name)' -r
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand expose" -l bin -d 'Where to write it (default $LPMX_BIN, else ~/.local/bin)' -r -F
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand expose" -s h -l help -d 'Print help'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "set" -d 'Set variables: KEY=VALUE arguments, or KEY=VALUE lines on stdin'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "unset" -d 'Remove variables: KEY arguments, or KEY lines on stdin'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "list" -d 'Print the variables, KEY=VALUE lines (or an lpmx.env document)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "host" -d 'Host programs: container paths whose exec runs the host\'s program (sbatch, qsub, ssh...) as a host process'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "expose" -d 'Write a host command running PROGRAM in this container (arguments, stdin, stdout and exit status passed through), callable from the host and from inside other containers'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and not __fish_seen_subcommand_from set unset list host expose help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "add" -d 'Add HOST (seen at the same path inside) or HOST:CONTAINER'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "remove" -d 'Remove the host programs at these container paths'
complete -c lpmx-env -n "__fish_lpmx_env_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "list" -d 'Print CONTAINER=HOST lines'
