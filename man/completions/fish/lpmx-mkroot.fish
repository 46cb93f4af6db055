complete -c lpmx-mkroot -l bind -d 'A host directory seen inside the container, HOST:CONTAINER or a single path for the same place; repeatable' -r
complete -c lpmx-mkroot -l host-program -d 'A host program run as such when the container execs its path (sbatch, qsub, ssh...): HOST or HOST:CONTAINER; repeatable. Later: lpmx-env NAME host add' -r
complete -c lpmx-mkroot -s l -l list -d 'List the containers: name, image and layer count'
complete -c lpmx-mkroot -l json -d 'With --list: print an lpmx.containers document (JSON)'
complete -c lpmx-mkroot -l remove -d 'Remove the containers NAME...; their layers stay in the store'
complete -c lpmx-mkroot -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lpmx-mkroot -s V -l version -d 'Print version'
