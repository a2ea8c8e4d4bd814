# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_deliver_global_optspecs
    string join \n f= a= d= maildir= rules= user-rules= test format= run-filters client-address= client-hostname= helo= log-stderr session= h/help V/version
end

function __fish_deliver_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_deliver_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_deliver_using_subcommand
    set -l cmd (__fish_deliver_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c deliver -n "__fish_deliver_needs_command" -s f -d 'Envelope sender ("" or <> for the null sender)' -r
complete -c deliver -n "__fish_deliver_needs_command" -s a -d 'Envelope recipient' -r
complete -c deliver -n "__fish_deliver_needs_command" -s d -d 'Deliver as USER (requires running as root)' -r
complete -c deliver -n "__fish_deliver_needs_command" -l maildir -d 'Maildir to deliver into (default: ~/Maildir)' -r -F
complete -c deliver -n "__fish_deliver_needs_command" -l rules -d 'System rules file (default: /etc/deliver/rules.toml)' -r -F
complete -c deliver -n "__fish_deliver_needs_command" -l user-rules -d 'Per-user rules file (default: ~/.config/deliver/rules.toml)' -r -F
complete -c deliver -n "__fish_deliver_needs_command" -l format -d 'Output format of --test' -r -f -a "text\t''
json\t''"
complete -c deliver -n "__fish_deliver_needs_command" -l client-address -d 'Client address, as Postfix\'s CLIENT_ADDRESS' -r
complete -c deliver -n "__fish_deliver_needs_command" -l client-hostname -d 'Client hostname, as Postfix\'s CLIENT_HOSTNAME' -r
complete -c deliver -n "__fish_deliver_needs_command" -l helo -d 'HELO name, as Postfix\'s CLIENT_HELO' -r
complete -c deliver -n "__fish_deliver_needs_command" -l session -d 'The LMTP session a delivery belongs to (given by `deliver lmtp` to the process that delivers as a system user; logged as `session=`)' -r
complete -c deliver -n "__fish_deliver_needs_command" -l test -d 'Dry run: show every decision, write nothing'
complete -c deliver -n "__fish_deliver_needs_command" -l run-filters -d 'With --test: run the filters the rules name (they are not run otherwise)'
complete -c deliver -n "__fish_deliver_needs_command" -l log-stderr -d 'Also write log lines to stderr'
complete -c deliver -n "__fish_deliver_needs_command" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_needs_command" -s V -l version -d 'Print version'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "check" -d 'Validate rules files and the maps they name, without reading a message'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "completions" -d 'Print the shell completion script for SHELL (the package installs this output for bash, zsh and fish)'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "replay" -d 'Run the rules over stored mail (Maildir folders, mboxes, message files) as --test does, and show where each message would go. Writes nothing'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "lmtp" -d 'Run the LMTP service (RFC 2033) for Postfix\'s lmtp(8) client'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "report" -d 'Summarise deliver\'s log lines, as pflogsumm does Postfix\'s'
complete -c deliver -n "__fish_deliver_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c deliver -n "__fish_deliver_using_subcommand check" -l rules -r -F
complete -c deliver -n "__fish_deliver_using_subcommand check" -l user-rules -r -F
complete -c deliver -n "__fish_deliver_using_subcommand check" -s q -l quiet -d 'Print nothing; the exit status tells'
complete -c deliver -n "__fish_deliver_using_subcommand check" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_using_subcommand completions" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_using_subcommand replay" -l rules -r -F
complete -c deliver -n "__fish_deliver_using_subcommand replay" -l user-rules -r -F
complete -c deliver -n "__fish_deliver_using_subcommand replay" -s d -d 'Evaluate as USER (requires running as root)' -r
complete -c deliver -n "__fish_deliver_using_subcommand replay" -l maildir -d 'The Maildir replayed without PATH (default: ~/Maildir)' -r -F
complete -c deliver -n "__fish_deliver_using_subcommand replay" -l format -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c deliver -n "__fish_deliver_using_subcommand replay" -l compare -d 'Also show the folder each message is in now, and what would move'
complete -c deliver -n "__fish_deliver_using_subcommand replay" -s r -l recursive -d 'With a Maildir, also its subfolders (.NAME)'
complete -c deliver -n "__fish_deliver_using_subcommand replay" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_using_subcommand lmtp" -l listen -d 'unix:PATH or inet:HOST:PORT (default: the socket systemd passes)' -r
complete -c deliver -n "__fish_deliver_using_subcommand lmtp" -l rules -d 'System rules file (default: /etc/deliver/rules.toml)' -r -F
complete -c deliver -n "__fish_deliver_using_subcommand lmtp" -l log-stderr -d 'Also write log lines to stderr'
complete -c deliver -n "__fish_deliver_using_subcommand lmtp" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_using_subcommand report" -l since -d 'Count the lines from TIME on: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], today, yesterday, now, or -N followed by m, h, d or w (ago)' -r
complete -c deliver -n "__fish_deliver_using_subcommand report" -l until -d 'Count the lines before TIME (same forms as --since)' -r
complete -c deliver -n "__fish_deliver_using_subcommand report" -l format -d 'Format on standard output [default: text, or none with --html]' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c deliver -n "__fish_deliver_using_subcommand report" -l html -d 'Write the report as one self-contained HTML page to FILE' -r -F
complete -c deliver -n "__fish_deliver_using_subcommand report" -l top -d 'Rows of the top lists in text and HTML' -r
complete -c deliver -n "__fish_deliver_using_subcommand report" -s h -l help -d 'Print help'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "check" -d 'Validate rules files and the maps they name, without reading a message'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "completions" -d 'Print the shell completion script for SHELL (the package installs this output for bash, zsh and fish)'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "replay" -d 'Run the rules over stored mail (Maildir folders, mboxes, message files) as --test does, and show where each message would go. Writes nothing'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "lmtp" -d 'Run the LMTP service (RFC 2033) for Postfix\'s lmtp(8) client'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "report" -d 'Summarise deliver\'s log lines, as pflogsumm does Postfix\'s'
complete -c deliver -n "__fish_deliver_using_subcommand help; and not __fish_seen_subcommand_from check completions replay lmtp report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
