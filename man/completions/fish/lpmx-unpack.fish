complete -c lpmx-unpack -l image -d 'The image to take from a SOURCE holding several: a repo tag (docker-archive) or a ref name (OCI layout)' -r
complete -c lpmx-unpack -l platform -d 'Platform to take from a multi-platform OCI layout (default: this host\'s)' -r
complete -c lpmx-unpack -l name -d 'The container\'s name, for a stream from lpmx-pack (default: its name on the source)' -r
complete -c lpmx-unpack -s j -l jobs -d 'Layers unpacked at once (default: the number of CPUs)' -r
complete -c lpmx-unpack -s q -l quiet -d 'No progress output on stderr'
complete -c lpmx-unpack -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lpmx-unpack -s V -l version -d 'Print version'
