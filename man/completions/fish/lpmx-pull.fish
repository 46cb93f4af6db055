complete -c lpmx-pull -l platform -d 'Platform to take from a multi-platform image (default: this host\'s)' -r
complete -c lpmx-pull -s j -l jobs -d 'Layers downloaded at once' -r
complete -c lpmx-pull -l retries -d 'Retries of a failing request (connection errors, 429, 5xx), with exponential backoff' -r
complete -c lpmx-pull -l plain-http -d 'Use plain HTTP for this registry. Loopback registries (localhost, 127.0.0.0/8, ::1) always use plain HTTP'
complete -c lpmx-pull -s q -l quiet -d 'No progress output on stderr'
complete -c lpmx-pull -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lpmx-pull -s V -l version -d 'Print version'
