complete -c lpmx-exec -s w -l workdir -d 'The working directory, a path in the container' -r
complete -c lpmx-exec -l bind -d 'A host directory seen inside, HOST:CONTAINER or PATH; repeatable' -r
complete -c lpmx-exec -l no-bind -d 'Do not show a default bind: /dev, /proc, /sys, /tmp, home, /etc/hosts, /etc/resolv.conf, or all' -r -f -a "/dev\t''
/proc\t''
/sys\t''
/tmp\t''
home\t''
/etc/hosts\t''
/etc/resolv.conf\t''
all\t''"
complete -c lpmx-exec -s e -l env -d 'Set an environment variable for this run; repeatable' -r
complete -c lpmx-exec -l pass-env -d 'Pass host variable NAME in (NAME* for every name it begins); repeatable' -r
complete -c lpmx-exec -l root -d 'Fake root, for package managers: the program sees itself as root; owners it sets and device nodes it makes are recorded in the container, not done, and later runs see them'
complete -c lpmx-exec -l gpu -d 'Make the host\'s NVIDIA GPU usable: its driver libraries first in the library path, its tools (nvidia-smi) run from the host; honours NVIDIA_VISIBLE_DEVICES'
complete -c lpmx-exec -l ephemeral -d 'Leave the container as it is: this run\'s writes go to a private writable layer in $TMPDIR (else /tmp), removed when it ends. Many runs at once (the tasks of a job) share the container this way without seeing each other\'s writes'
complete -c lpmx-exec -l no-launcher-env -d 'Keep the job launcher\'s variables (SLURM_*, PMIX_*, OMPI_*, ...) of the host out of the container'
complete -c lpmx-exec -l no-trap -d 'Run without the system-call trap: the preload library alone keeps programs inside (files glibc opens for itself, such as NSS\'s /etc/passwd, are then the host\'s, and static programs, which only the trap keeps inside, are refused)'
complete -c lpmx-exec -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lpmx-exec -s V -l version -d 'Print version'
