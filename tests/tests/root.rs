//! Fake root (`lpmx-exec --root`): package managers install into a
//! container, as an unprivileged user, and what they recorded persists.

use lpmx_tests::containers::debian_container;
use lpmx_tests::env::{TEST_UID, running_as_root};
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::{Env, Run};

fn bookworm(env: &Env, name: &str) -> LocalRegistry {
    debian_container(env, "bookworm", name, &[])
}

fn sh(env: &Env, root: bool, script: &str) -> Run {
    let mut args = vec![];
    if root {
        args.push("--root");
    }
    args.extend(["c", "--", "/bin/sh", "-c", script]);
    env.run("lpmx-exec", args)
}

#[test]
fn fake_root_reports_root_and_records_owners_and_devices() {
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    let run = sh(
        &env,
        true,
        "id -u; id -g; stat -c '%U:%G %A' /etc/shadow /usr/bin/passwd; \
         perl -e 'open(F, \"<\", \"/etc/shadow\") or die; @s = stat(F); printf \"fstat %d:%d %o\\n\", $s[4], $s[5], $s[2] & 07777'; \
         stat -c 'statx %u:%g %a' - < /etc/shadow",
    );
    run.success();
    assert_eq!(
        run.stdout,
        "0\n0\nroot:shadow -rw-r-----\nroot:root -rwsr-xr-x\nfstat 0:42 640\nstatx 0:42 640\n",
        "what the image records, by path and through a descriptor"
    );
    if running_as_root() {
        let run = sh(&env, false, "id -u");
        assert_eq!(
            run.stdout,
            format!("{TEST_UID}\n"),
            "without --root, the real ids"
        );
    }
    sh(&env, true, "echo x > /root/owned && chown 123:456 /root/owned && mknod /root/null c 1 3 && mkdir /root/d && chown 7:8 /root/d").success();
    // A later run sees what root did.
    let run = sh(
        &env,
        true,
        "stat -c '%u:%g %F' /root/owned /root/d; stat -c '%F %t,%T' /root/null",
    );
    run.success();
    assert_eq!(
        run.stdout,
        "123:456 regular file\n7:8 directory\ncharacter special file 1,3\n"
    );
    // The set*id rules: root may become anyone, and then not root again.
    let run = sh(
        &env,
        true,
        "perl -MPOSIX -e 'POSIX::setgid(100); POSIX::setuid(100); print \"$< $>\\n\"; $> = 0; print $> == 0 ? \"root again\\n\" : \"still $>\\n\"'; su -s /bin/sh -c 'id -un' nobody",
    );
    run.success();
    assert_eq!(run.stdout, "100 100\nstill 100\nnobody\n");
    // A user root became (apt's _apt, fetching and verifying into /tmp)
    // uses the files it makes in a bind: the host's /tmp has no record of
    // who made them, and the kernel lets the real user, their owner.
    let run = sh(
        &env,
        true,
        "su -s /bin/sh -c 'd=$(mktemp -d) && chmod 700 $d && touch $d/f && echo x > $d/g && \
         touch -d @0 $d/g && rm -r $d && echo done' _apt",
    );
    run.success();
    assert_eq!(run.stdout, "done\n", "{run:#?}");
    // The same through a descriptor: fchmod, fchown to oneself, futimes.
    let run = sh(
        &env,
        true,
        r#"su -s /bin/sh -c 'perl -e "
            my \$p = q(/tmp/lpmx-fd.) . \$\$;
            open(my \$f, q(>), \$p) or die qq(open: \$!);
            chmod(0600, \$f) or die qq(fchmod: \$!);
            printf qq(%o\n), (stat \$p)[2] & 07777;
            chown(\$<, -1, \$f) or die qq(fchown: \$!);
            utime(1, 1, \$f) or die qq(futimes: \$!);
            close \$f; unlink(\$p) or die qq(unlink: \$!); print qq(done\n)"' _apt"#,
    );
    run.success();
    assert_eq!(run.stdout, "600\ndone\n", "{run:#?}");
}

#[test]
fn apt_get_installs_packages_that_later_runs_use() {
    let env = Env::new();
    let _registry = bookworm(&env, "c");
    let run = sh(
        &env,
        true,
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello tree libyaml-0-2",
    );
    run.success();
    let run = sh(
        &env,
        false,
        // libyaml's install runs ldconfig (a libc-bin trigger): all configured.
        "hello; tree --version | head -c 9; echo; dpkg -l hello tree libyaml-0-2 | grep -c '^ii'; dpkg --audit | wc -l",
    );
    run.success();
    assert_eq!(run.stdout, "Hello, world!\ntree v2.1\n3\n0\n", "{run:#?}");
    // Owners as dpkg and apt set them.
    let run = sh(
        &env,
        true,
        "stat -c '%U:%G' /usr/bin/hello /var/cache/apt/archives/partial",
    );
    run.success();
    assert_eq!(run.stdout, "root:root\n_apt:root\n", "{run:#?}");

    // dpkg -i of a local package built in the container.
    let script = "set -e; mkdir -p /root/pkg/DEBIAN /root/pkg/usr/local/bin; \
        printf 'Package: lpmx-demo\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: lpmx <lpmx@example.invalid>\\nDescription: demo\\n' > /root/pkg/DEBIAN/control; \
        printf '#!/bin/sh\\necho demo works\\n' > /root/pkg/usr/local/bin/lpmx-demo; chmod 755 /root/pkg/usr/local/bin/lpmx-demo; \
        dpkg-deb --root-owner-group --build /root/pkg /root/demo.deb >/dev/null; dpkg -i /root/demo.deb >/dev/null";
    sh(&env, true, script).success();
    let run = sh(&env, false, "lpmx-demo; dpkg -l lpmx-demo | grep -c '^ii'");
    run.success();
    assert_eq!(run.stdout, "demo works\n1\n");
}
