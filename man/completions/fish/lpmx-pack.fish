complete -c lpmx-pack -l layers -d 'Which image layers the stream carries: all (the target needs nothing) or none (the target has the image already)' -r -f -a "all\t''
none\t''"
complete -c lpmx-pack -l oci -d 'Export as an OCI image layout in DIR (made, or added to)' -r -F
complete -c lpmx-pack -l docker-archive -d 'Export as a docker save archive FILE (docker load, podman load)' -r -F
complete -c lpmx-pack -l tag -d 'The exported image\'s name, NAME[:TAG] (default lpmx/CONTAINER:latest); an OCI layout names it by TAG' -r
complete -c lpmx-pack -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lpmx-pack -s V -l version -d 'Print version'
